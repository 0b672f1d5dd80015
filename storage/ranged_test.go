package storage

import (
	"context"
	"errors"
	"testing"
)

// openOnly hides a store's OpenRange, so ReadRange reads from the start.
type openOnly struct{ Store }

// TestReadRange: each adapter's ranged read, and the read from the start
// for a store without one, give the range's bytes; a range past the end
// of the object is ErrShortRange; a missing object ErrNotExist.
func TestReadRange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	body := "id,name\r\n1,\"a\r\nb\"\r\n2,日本\r\n"
	for name, mk := range stores() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := mk(t)
			put(t, s, "uploads/x.csv", body)
			for _, st := range []Store{s, openOnly{s}} {
				for _, r := range [][2]int64{{0, 9}, {9, 10}, {19, int64(len(body) - 19)}, {5, 0}} {
					got, err := ReadRange(ctx, st, "uploads/x.csv", r[0], r[1])
					if err != nil {
						t.Fatalf("%T %v: %v", st, r, err)
					}
					if want := body[r[0] : r[0]+r[1]]; string(got) != want {
						t.Fatalf("%T %v: %q, want %q", st, r, got, want)
					}
				}
				if _, err := ReadRange(ctx, st, "uploads/x.csv", 20, int64(len(body))); !errors.Is(err, ErrShortRange) {
					t.Fatalf("%T past the end: %v, want ErrShortRange", st, err)
				}
				if _, err := ReadRange(ctx, st, "uploads/none.csv", 0, 3); !errors.Is(err, ErrNotExist) {
					t.Fatalf("%T missing: %v, want ErrNotExist", st, err)
				}
			}
		})
	}
}

// TestLocalReadAt: Local's held-open reads give the range's bytes, and
// ErrShortRange past the end.
func TestLocalReadAt(t *testing.T) {
	t.Parallel()
	l := newTestLocal(t)
	put(t, l, "uploads/x.csv", "id,name\n1,a\n")
	at, err := l.OpenReaderAt(context.Background(), "uploads/x.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer at.Close()
	if b, err := ReadAtExactly(at, "uploads/x.csv", 8, 4); err != nil || string(b) != "1,a\n" {
		t.Fatalf("ReadAtExactly = %q, %v", b, err)
	}
	if _, err := ReadAtExactly(at, "uploads/x.csv", 8, 5); !errors.Is(err, ErrShortRange) {
		t.Fatalf("past the end: %v", err)
	}
	if _, err := l.OpenReaderAt(context.Background(), "uploads/none.csv"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
}
