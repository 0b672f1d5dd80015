package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sync"
	"testing"

	"github.com/pallarel/pallarel/models"
)

// freshDatabase creates an empty database on the test server of kind
// (PostgreSQL at 127.0.0.1:5432, MariaDB at 127.0.0.1:3306) and returns
// its DATABASE_URL; it is dropped at cleanup.
func freshDatabase(t *testing.T, kind string) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	name := "pallarel_app_" + hex.EncodeToString(b)
	var adminURL, url, create, drop string
	switch kind {
	case "postgres":
		adminURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
		url = "postgres://postgres@127.0.0.1:5432/" + name + "?sslmode=disable"
		create, drop = `CREATE DATABASE "`+name+`"`, `DROP DATABASE "`+name+`" WITH (FORCE)`
	case "mariadb":
		adminURL = "mysql://root@127.0.0.1:3306/test"
		url = "mysql://root@127.0.0.1:3306/" + name
		create, drop = "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4", "DROP DATABASE `"+name+"`"
	}
	admin, err := models.Open(context.Background(), models.DBConfig{URL: adminURL, MaxOpenConns: 1})
	if err != nil {
		t.Fatalf("%s is required: %v", kind, err)
	}
	if err := admin.Exec(create).Error; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := admin.Exec(drop).Error; err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
		models.Close(admin)
	})
	return url
}

// A server and its workers started together on a fresh database all start
// (they used to lose a race on creating the tables, then panic).
func TestOpenTogetherOnFreshDatabase(t *testing.T) {
	t.Parallel()
	const processes = 4
	for _, kind := range []string{"postgres", "mariadb", "sqlite"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"DB_POOL": "2"}
			if kind != "sqlite" {
				env["DATABASE_URL"] = freshDatabase(t, kind)
			}
			cfg := testConfig(t, env)
			start := make(chan struct{})
			errs := make([]error, processes)
			var wg sync.WaitGroup
			for i := range processes {
				wg.Go(func() {
					<-start
					a, err := Open(context.Background(), cfg, slog.New(slog.DiscardHandler), Options{})
					if err == nil {
						err = a.Close()
					}
					errs[i] = err
				})
			}
			close(start)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("process %d: %v", i, err)
				}
			}
		})
	}
}
