package server

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/internal/s3test"
	"github.com/pallarel/pallarel/models"
	"github.com/pallarel/pallarel/router"
)

func TestDownload(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	resp, body := b.get(t, "/csv_processing/nope/download")
	wantStatus(t, resp, body, http.StatusBadRequest)

	// An unknown token is 404; a run not ready yet is 409 with its state.
	resp, body = b.get(t, "/csv_processing/00000000-0000-4000-8000-000000000000/download")
	wantStatus(t, resp, body, http.StatusNotFound)
	token, rep := newRun(t, b, true)
	resp, body = b.get(t, "/csv_processing/"+token+"/download", "Accept", "application/json")
	wantStatus(t, resp, body, http.StatusConflict)
	if !strings.Contains(body, `"state":"processing"`) || !strings.Contains(body, "not ready") {
		t.Errorf("409 body = %s", body)
	}

	zip := "PK\x03\x04 a fake zip \x00\x01\x02"
	if err := b.store.Put(ctx, contract.ResultKey(token), strings.NewReader(zip)); err != nil {
		t.Fatal(err)
	}
	if err := b.db.DB.Model(&models.ClientReport{}).Where("id = ?", rep.ID).
		Updates(map[string]any{"status": models.ReportCompleted, "file": contract.ResultKey(token)}).Error; err != nil {
		t.Fatal(err)
	}
	resp, body = b.get(t, "/csv_processing/"+token+"/download")
	wantStatus(t, resp, body, http.StatusOK)
	if body != zip {
		t.Errorf("body = %q", body)
	}
	if cd := resp.Header.Get("Content-Disposition"); cd != `attachment; filename="report-`+token+`.zip"` {
		t.Errorf("Content-Disposition = %q", cd)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/zip" {
		t.Errorf("Content-Type = %q", ct)
	}
	resp, body = b.get(t, "/csv_processing/"+router.NewToken()+"/download")
	wantStatus(t, resp, body, http.StatusNotFound)
}

// TestDownloadPresigned runs on an S3 store (gofakes3): the download is a
// 302 to a presigned URL that serves the ZIP.
func TestDownloadPresigned(t *testing.T) {
	t.Parallel()
	st, client := s3test.NewStore(t, "reports")
	fakeURL := *client.Options().BaseEndpoint
	ctx := context.Background()
	b := setup(t, func(d *Deps) { d.Store = st })
	token, _ := newRun(t, b, true)
	resp, body := b.get(t, "/csv_processing/"+token+"/download")
	wantStatus(t, resp, body, http.StatusConflict)
	if err := st.Put(ctx, contract.ResultKey(token), strings.NewReader("PK\x03\x04zip")); err != nil {
		t.Fatal(err)
	}
	resp, body = b.get(t, "/csv_processing/"+token+"/download")
	wantStatus(t, resp, body, http.StatusFound)
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, fakeURL+"/reports/reports/"+token+".zip?") || !strings.Contains(loc, "X-Amz-Expires=300") {
		t.Fatalf("Location = %q", loc)
	}
	got, err := http.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(got.Body)
	got.Body.Close()
	if string(data) != "PK\x03\x04zip" {
		t.Errorf("presigned URL served %q", data)
	}
}
