# syntax=docker/dockerfile:1
# Multi-stage build: static Go binaries on a distroless, non-root image.
# The same image runs the web server (default), the `report` worker and the
# per-token workers that ECS starts (/app/worker -q report-<sha1> -c 10).
#
# Multi-arch: the Go stages run on the builder's platform and cross-compile
# for the target's (no emulation), so one command builds both Fargate
# architectures (runtimePlatform.cpuArchitecture X86_64 or ARM64):
#   docker buildx build --platform linux/amd64,linux/arm64 -t <repo>:<tag> --push .
# and a plain `docker build --platform linux/amd64 .` on an ARM laptop
# builds the image the task definitions run.

FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
ARG TARGETOS=linux
ARG TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/server ./cmd/worker ./cmd/pallarel

# A CJK TrueType font for Japanese text in PDF reports (IPA Gothic); font
# files are the same on every architecture.
FROM --platform=$BUILDPLATFORM debian:bookworm-slim AS fonts
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
