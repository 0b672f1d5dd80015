package redisurl

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	neturl "net/url"
	"os"
)

// Settings are how to reach Redis beyond its URL: Sentinel, and the
// TLS files a private CA or client certificates need. The zero value dials
// the URL's host as it is.
type Settings struct {
	// Sentinels are host:port of Redis Sentinels to ask for the address of
	// the master named SentinelMaster (redis-client's `sentinels:` and
	// `name:`). Each new connection asks again, so one made after a
	// failover reaches the promoted master. The URL then gives only the
	// password, user, database and scheme.
	Sentinels        []string
	SentinelMaster   string
	SentinelUsername string
	SentinelPassword string

	TLS TLS
}

// TLS mirrors redis-client's ssl_params for rediss:// URLs.
type TLS struct {
	CAFile     string // PEM CAs trusted instead of the system's (ca_file)
	CertFile   string // client certificate (cert)
	KeyFile    string // its key (key)
	ServerName string // name checked against the certificate; default: the URL's host
	Verify     string // "peer" (default) or "none" (verify_mode)
}

// IsZero reports whether no TLS setting was given.
func (t TLS) IsZero() bool { return t == TLS{} }

// Config builds the TLS configuration, reading the files.
func (t TLS) Config() (*tls.Config, error) {
	cfg := &tls.Config{ServerName: t.ServerName, MinVersion: tls.VersionTLS12}
	switch t.Verify {
	case "", "peer":
	case "none":
		cfg.InsecureSkipVerify = true
	default:
		return nil, fmt.Errorf("TLS verify %q: want peer or none", t.Verify)
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS CA file %s: no PEM certificate in it", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("TLS client certificate: give both the certificate and the key file")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Validate checks the settings against the URL without connecting: it
// reads the TLS files, so a missing one fails at start.
func (s Settings) Validate(url string) error {
	var errs []error
	if !s.TLS.IsZero() {
		if u, err := neturl.Parse(url); err == nil && u.Scheme != "rediss" {
			errs = append(errs, errors.New("TLS settings need a rediss:// URL"))
		}
		if _, err := s.TLS.Config(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(s.Sentinels) > 0 && s.SentinelMaster == "" {
		errs = append(errs, errors.New("Sentinel: no master name"))
	}
	for _, a := range s.Sentinels {
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("Sentinel address %q: want host:port", a))
		}
	}
	return errors.Join(errs...)
}
