package contract

import (
	"errors"
	"fmt"
	"net/url"
)

// ValidWebhookURL accepts an absolute http or https URL with a host: the
// rule for a webhook given with an upload and for its delivery.
func ValidWebhookURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("webhook url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return fmt.Errorf("webhook url %q: want an http or https URL with a host and no credentials", s)
	}
	if len(s) > 2000 {
		return errors.New("webhook url: longer than 2000 characters")
	}
	return nil
}
