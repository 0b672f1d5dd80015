package main

import (
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestComposeFileIsValid runs `docker-compose config -q` on the repository's
// docker-compose.yml (Debian's docker-compose; no Docker engine needed).
func TestComposeFileIsValid(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Fatalf("docker-compose is missing (apt-get install -y docker-compose; .ci/run does): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-f", "docker-compose.yml", "config", "-q")
	cmd.Dir = filepath.Join("..", "..")
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker-compose config -q: %v (ctx: %v)\n%s", err, ctx.Err(), out)
	}
}

// TestStaticBuildAsDockerfile builds the packages the Dockerfile builds,
// with CGO_ENABLED=0 as it does, and checks the binaries are static (no
// ELF interpreter), as the distroless static image needs. Cold, this
// compiles every dependency once more without cgo (minutes on a busy
// 2-core machine); the build cache makes later runs take seconds.
func TestStaticBuildAsDockerfile(t *testing.T) {
	t.Parallel()
	dockerfile, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`RUN CGO_ENABLED=0 GOOS=\$TARGETOS GOARCH=\$TARGETARCH go build .*-o /out/ ((?:\./cmd/\w+ ?)+)`).FindSubmatch(dockerfile)
	if m == nil {
		t.Fatalf("Dockerfile has no `RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build ... -o /out/ ./cmd/...` line")
	}
	pkgs := strings.Fields(string(m[1]))
	out := t.TempDir()
	goBuildTimeout(t, 10*time.Minute, out, []string{"CGO_ENABLED=0"}, pkgs...)
	for _, p := range pkgs {
		checkStatic(t, filepath.Join(out, filepath.Base(p)), 0)
	}
}

// checkStatic opens an ELF binary and checks it has no interpreter and,
// when machine is set, that it is built for it.
func checkStatic(t *testing.T, name string, machine elf.Machine) {
	t.Helper()
	f, err := elf.Open(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked", filepath.Base(name))
		}
	}
	if machine != 0 && f.Machine != machine {
		t.Errorf("%s is built for %s, want %s", filepath.Base(name), f.Machine, machine)
	}
}

// TestDockerfileCrossCompiles: the Go stage runs on the builder's platform
// ($BUILDPLATFORM) and builds for the image's ($TARGETARCH), so
// `docker buildx build --platform linux/amd64,linux/arm64` needs no
// emulation. Both Fargate architectures are built here as the stage
// builds them, and each binary is checked for its machine. Cold, it
// compiles every dependency for arm64 once (minutes on a busy machine).
func TestDockerfileCrossCompiles(t *testing.T) {
	t.Parallel()
	dockerfile, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FROM --platform=$BUILDPLATFORM golang:", "ARG TARGETARCH", "GOARCH=$TARGETARCH"} {
		if !strings.Contains(string(dockerfile), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	for arch, machine := range map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64} {
		out := t.TempDir()
		goBuildTimeout(t, 10*time.Minute, out, []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + arch}, "./cmd/worker")
		checkStatic(t, filepath.Join(out, "worker"), machine)
	}
}

// TestComposePublishesOnLoopbackOnly: every port docker-compose publishes,
// in every profile, is on the host's 127.0.0.1 (Redis has no password and
// the Web UIs can delete jobs).
func TestComposePublishesOnLoopbackOnly(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Fatalf("docker-compose is missing (apt-get install -y docker-compose; .ci/run does): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-f", "docker-compose.yml", "--profile", "token", "--profile", "ruby-web", "config")
	cmd.Dir = filepath.Join("..", "..")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker-compose config: %v", err)
	}
	// The normalized file lists ports as "    - HOST_IP:PUBLISHED:TARGET/tcp"
	// under "    ports:".
	var ports []string
	lines := strings.Split(string(out), "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != "ports:" {
			continue
		}
		for _, p := range lines[i+1:] {
			p, ok := strings.CutPrefix(strings.TrimSpace(p), "- ")
			if !ok {
				break
			}
			ports = append(ports, p)
		}
	}
	if len(ports) < 3 {
		t.Fatalf("found ports %v, want redis, web and ruby-web:\n%s", ports, out)
	}
	for _, p := range ports {
		if !strings.HasPrefix(p, "127.0.0.1:") {
			t.Errorf("port %s is published beyond loopback", p)
		}
	}
}

// TestContainersBindExplicitly: without auth the server binds loopback, so
// the image and the compose file must say BIND_ADDR=0.0.0.0 themselves,
// and compose publishes the port on the host's loopback only.
func TestContainersBindExplicitly(t *testing.T) {
	t.Parallel()
	for file, want := range map[string][]string{
		"Dockerfile":         {"BIND_ADDR=0.0.0.0"},
		"docker-compose.yml": {`BIND_ADDR: "0.0.0.0"`, `"127.0.0.1:8080:8080"`},
	} {
		b, err := os.ReadFile(filepath.Join("..", "..", file))
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s lacks %s", file, w)
			}
		}
	}
}

// TestMakeRunSaysItCompiles: the first `make run` compiles for minutes;
// it must say so before it starts, not print nothing.
func TestMakeRunSaysItCompiles(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("make", "--no-print-directory", "-n", "run")
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make -n run: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 2 || !strings.Contains(lines[0], "Compiling") || !strings.Contains(string(out), "go build -v") {
		t.Errorf("make run does not announce the build first:\n%s", out)
	}
}
