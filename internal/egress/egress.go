// Package egress keeps outbound HTTP (the run webhooks) from being aimed
// inward: every address a connection is about to use is checked at dial
// time, after DNS resolution, so a name that resolves (or rebinds) to
// loopback, a private network, link-local, CGNAT, multicast or the cloud
// metadata and credential endpoints is refused, unless the operator's
// allow-list names it.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrRefused is the error of a connection the policy refused.
var ErrRefused = errors.New("egress refused")

// metadata are the cloud instance metadata and credential endpoints: EC2's
// IMDS (IPv4 and IPv6) and the ECS task credentials endpoint. They are
// allowed only when the allow-list names them one by one: a CIDR that
// merely covers them (169.254.0.0/16 for a link-local receiver) does not.
var metadata = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"),
	netip.MustParseAddr("169.254.170.2"),
	netip.MustParseAddr("169.254.170.23"), // EKS pod identity agent
	netip.MustParseAddr("fd00:ec2::254"),
	netip.MustParseAddr("fd00:ec2::23"),
}

// blocked are the ranges no webhook may reach by default, beyond what
// netip.Addr's predicates (loopback, private, link-local, multicast,
// unspecified) cover.
var blocked = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // CGNAT (RFC 6598)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and broadcast
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("100::/64"),        // discard
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("fec0::/10"),       // deprecated site-local
	netip.MustParsePrefix("2001::/32"),       // Teredo: carries an IPv4 address
	netip.MustParsePrefix("2002::/16"),       // 6to4: carries an IPv4 address
	netip.MustParsePrefix("::/128"),          // unspecified
	netip.MustParsePrefix("::ffff:0:0:0/96"), // IPv4-translated (SIIT)
}

// nat64 is the well-known NAT64 prefix: its last 32 bits are an IPv4
// address, checked as such.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// Policy decides which addresses outbound connections may reach.
type Policy struct {
	// Allow lists the networks allowed although they are inward (a
	// receiver inside the VPC): WEBHOOK_ALLOW_CIDRS.
	Allow []netip.Prefix
}

// ParseAllow reads a comma- or space-separated list of CIDRs and single
// addresses ("10.1.2.0/24, 192.168.7.9").
func ParseAllow(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR nor an IP address", f)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// Check returns nil when a connection to a may go ahead, or an error
// wrapping ErrRefused that names the address (for the server log only).
func (p Policy) Check(a netip.Addr) error {
	a = a.Unmap().WithZone("") // ::ffff:127.0.0.1 is 127.0.0.1
	if nat64.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	for _, m := range metadata {
		if a == m {
			for _, al := range p.Allow {
				if al.IsSingleIP() && al.Addr() == a {
					return nil
				}
			}
			return fmt.Errorf("%w: %s is a cloud metadata or credentials address", ErrRefused, a)
		}
	}
	if !inward(a) {
		return nil
	}
	for _, al := range p.Allow {
		if al.Contains(a) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is not a public address (WEBHOOK_ALLOW_CIDRS may list it)", ErrRefused, a)
}

func inward(a netip.Addr) bool {
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return true
	}
	for _, b := range blocked {
		if b.Contains(a) {
			return true
		}
	}
	return false
}

// control is a net.Dialer Control hook: it runs for every address the
// dialer tries, after resolution, so DNS rebinding cannot slip past it.
func (p Policy) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: unparsable address %q", ErrRefused, address)
	}
	return p.Check(ap.Addr())
}

// ClientOptions shape Client.
type ClientOptions struct {
	// Timeout bounds a whole request: connect, TLS, headers and body.
	Timeout time.Duration
	// Proxy, when set, carries every request (WEBHOOK_PROXY); the policy
	// then checks the proxy's address at dial time and the target's
	// addresses before each request (the proxy resolves them again: its
	// own rules are the last word). Nil: no proxy, whatever HTTP_PROXY
	// says.
	Proxy *url.URL
}

// Client is an HTTP client whose connections obey p: no redirects followed
// (a signed delivery goes to the configured URL only), no proxy unless
// configured, no keep-alive beyond the request.
func (p Policy) Client(o ClientOptions) *http.Client {
	d := &net.Dialer{Timeout: o.Timeout, Control: p.control}
	t := &http.Transport{
		DialContext:            d.DialContext,
		TLSHandshakeTimeout:    o.Timeout,
		ResponseHeaderTimeout:  o.Timeout,
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 64 << 10,
	}
	var rt http.RoundTripper = t
	if o.Proxy != nil {
		t.Proxy = http.ProxyURL(o.Proxy)
		rt = checkTarget{p: p, next: t}
	}
	return &http.Client{
		Timeout:       o.Timeout,
		Transport:     rt,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// checkTarget resolves a request's host and checks every address before a
// proxy takes the request.
type checkTarget struct {
	p    Policy
	next http.RoundTripper
}

func (c checkTarget) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := c.p.CheckHost(r.Context(), r.URL.Hostname()); err != nil {
		return nil, err
	}
	return c.next.RoundTrip(r)
}

// CheckHost resolves host (a name or an address) and checks every address.
func (p Policy) CheckHost(ctx context.Context, host string) error {
	if a, err := netip.ParseAddr(host); err == nil {
		return p.Check(a)
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", host, err)
	}
	for _, a := range addrs {
		if err := p.Check(a); err != nil {
			return err
		}
	}
	return nil
}
