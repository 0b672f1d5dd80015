package egress

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	refused := []string{
		"127.0.0.1", "127.0.0.2", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "fc00::1", "fd12::1",
		"169.254.1.1", "fe80::1", "100.64.0.1", "100.127.255.255", "224.0.0.1", "ff02::1", "0.0.0.0", "::",
		"169.254.169.254", "169.254.170.2", "fd00:ec2::254", "255.255.255.255", "0.1.2.3",
		"::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", // IPv4-mapped
		"64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1", // NAT64 of 169.254.169.254 and 127.0.0.1
		"2002:7f00:1::1", // 6to4 of 127.0.0.1
	}
	allowed := []string{"93.184.216.34", "8.8.8.8", "2606:4700::1111", "100.128.0.1", "64:ff9b::808:808"}
	var p Policy
	for _, s := range refused {
		if err := p.Check(netip.MustParseAddr(s)); !errors.Is(err, ErrRefused) {
			t.Errorf("Check(%s) = %v, want refused", s, err)
		}
	}
	for _, s := range allowed {
		if err := p.Check(netip.MustParseAddr(s)); err != nil {
			t.Errorf("Check(%s) = %v, want allowed", s, err)
		}
	}
}

// The allow-list opens the networks it names; a metadata address only
// when named alone, not because a wider CIDR covers it.
func TestAllowList(t *testing.T) {
	t.Parallel()
	allow, err := ParseAllow("10.1.0.0/16, 127.0.0.2 169.254.0.0/16,fd00:ec2::254")
	if err != nil {
		t.Fatal(err)
	}
	p := Policy{Allow: allow}
	for s, want := range map[string]bool{
		"10.1.2.3": true, "10.2.0.1": false, "127.0.0.2": true, "::ffff:127.0.0.2": true, "127.0.0.1": false,
		"169.254.10.10": true, "169.254.169.254": false, "169.254.170.2": false, "fd00:ec2::254": true,
	} {
		if got := p.Check(netip.MustParseAddr(s)) == nil; got != want {
			t.Errorf("allowed(%s) = %v, want %v", s, got, want)
		}
	}
	if _, err := ParseAllow("10.0.0.0/33"); err == nil {
		t.Error("a bad CIDR was accepted")
	}
	if _, err := ParseAllow("intranet"); err == nil {
		t.Error("a name was accepted")
	}
}

// receiver listens on addr and answers 204.
func receiver(t *testing.T, addr string, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(h)
	s.Listener.Close()
	s.Listener = ln
	s.Start()
	t.Cleanup(s.Close)
	return s.URL
}

// At dial time: a receiver on 127.0.0.2 is refused before any byte is
// sent, reached once listed; a name resolving inward (localhost) is
// refused too, as DNS rebinding would make it.
func TestClientRefusesInwardAtDialTime(t *testing.T) {
	t.Parallel()
	hits := 0
	url := receiver(t, "127.0.0.2:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits++; w.WriteHeader(204) }))
	_, port, _ := net.SplitHostPort(url[len("http://"):])
	ctx := context.Background()
	post := func(p Policy, u string) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
		resp, err := p.Client(ClientOptions{Timeout: 5 * time.Second}).Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return err
	}
	if err := post(Policy{}, url); !errors.Is(err, ErrRefused) || hits != 0 {
		t.Fatalf("127.0.0.2: %v, %d hits; want refused", err, hits)
	}
	if err := post(Policy{}, "http://localhost:"+port+"/"); !errors.Is(err, ErrRefused) {
		t.Fatalf("localhost: %v; want refused", err)
	}
	allow, _ := ParseAllow("127.0.0.2")
	if err := post(Policy{Allow: allow}, url); err != nil || hits != 1 {
		t.Fatalf("listed 127.0.0.2: %v, %d hits", err, hits)
	}
}

// A public-looking receiver's redirect to a private address is not
// followed (no redirect is), and the proxy from the environment is not
// used.
func TestClientFollowsNoRedirectAndNoEnvProxy(t *testing.T) {
	inner := 0
	target := receiver(t, "127.0.0.3:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { inner++ }))
	redirect := receiver(t, "127.0.0.2:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target+"/internal", http.StatusTemporaryRedirect)
	}))
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	allow, _ := ParseAllow("127.0.0.2")
	req, _ := http.NewRequest(http.MethodPost, redirect, nil)
	resp, err := Policy{Allow: allow}.Client(ClientOptions{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || inner != 0 {
		t.Fatalf("status %d, %d requests inside: the redirect was followed", resp.StatusCode, inner)
	}
}

// With WEBHOOK_PROXY the proxy carries the request (its address passes the
// dial check, here listed), and a target that resolves inward is refused
// before the proxy sees it.
func TestClientThroughProxy(t *testing.T) {
	t.Parallel()
	var seen []string
	proxy := receiver(t, "127.0.0.2:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.URL.String())
		w.WriteHeader(http.StatusNoContent)
	}))
	pu, _ := url.Parse(proxy)
	allow, _ := ParseAllow("127.0.0.2, 127.0.0.5")
	c := Policy{Allow: allow}.Client(ClientOptions{Timeout: 5 * time.Second, Proxy: pu})
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.3:9/inside", nil)
	if _, err := c.Do(req); !errors.Is(err, ErrRefused) || len(seen) != 0 {
		t.Fatalf("inward target through the proxy: %v, proxy saw %v", err, seen)
	}
	req, _ = http.NewRequest(http.MethodPost, "http://127.0.0.5:9/listed", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(seen) != 1 || seen[0] != "http://127.0.0.5:9/listed" {
		t.Fatalf("the proxy saw %v", seen)
	}
}
