// Command server is Pallarel's web application: uploads, progress, ZIP
// downloads, health, metrics and the /sidekiq dashboard.
//
// Without REDIS_URL it runs all-in-one: an embedded Redis-protocol server,
// SQLite and local storage in DATA_DIR, the `report` worker and each token's
// worker in this process. With REDIS_URL (and DATABASE_URL, S3, ECS
// settings) it is the production web server, and workers run apart
// (cmd/worker); -workers runs them in this process anyway.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/gin-gonic/gin"

	"github.com/pallarel/pallarel/internal/heapprofile"
	"github.com/pallarel/pallarel/internal/servercmd"
)

func main() {
	if os.Getenv("GIN_MODE") == "" {
		gin.SetMode(gin.ReleaseMode) // gin's mode is process-wide: set once, here
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	heapprofile.Start(ctx, os.Getenv("PALLAREL_HEAPPROFILE"))
	os.Exit(Run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr, nil))
}

// Run starts the server and blocks until ctx ends; see servercmd.Run.
func Run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer, ready chan<- string) int {
	return servercmd.Run(ctx, args, lookup, stdout, stderr, ready)
}
