package config

import "testing"

func TestSidekiqDialect81(t *testing.T) {
	t.Parallel()
	c, err := loadEnv(map[string]string{"SIDEKIQ_DIALECT": "8.1"})
	if err != nil || c.SidekiqDialect != 81 {
		t.Fatalf("SIDEKIQ_DIALECT=8.1: %d, %v", c.SidekiqDialect, err)
	}
	if _, err := loadEnv(map[string]string{"SIDEKIQ_DIALECT": "8.2"}); err == nil {
		t.Fatal("SIDEKIQ_DIALECT=8.2 accepted")
	}
}
