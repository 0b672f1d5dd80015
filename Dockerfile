# syntax=docker/dockerfile:1
# Multi-stage build: static Go binaries on a distroless, non-root image.
# The same image runs the web server (default), the `report` worker and the
# per-token workers that ECS starts (/app/worker -q report-<sha1> -c 10).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/server ./cmd/worker ./cmd/pallarel

# A CJK TrueType font for Japanese text in PDF reports (IPA Gothic).
FROM debian:bookworm-slim AS fonts
RUN apt-get update \
 && apt-get install -y --no-install-recommends fonts-ipafont-gothic \
 && rm -rf /var/lib/apt/lists/*

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=fonts /usr/share/fonts/opentype/ipafont-gothic/ /usr/share/fonts/opentype/ipafont-gothic/
COPY --from=build /out/ /app/
# BIND_ADDR: a container must listen on every interface to be reachable
# through its published port. Without auth the server would otherwise bind
# loopback only; set AUTH_TOKEN or BASIC_AUTH_* before exposing it.
ENV PORT=8080 BIND_ADDR=0.0.0.0 DATA_DIR=/tmp/pallarel PDF_FONT_PATH=/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf
EXPOSE 8080
USER nonroot:nonroot
ENTRYPOINT ["/app/server"]
