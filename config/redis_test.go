package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/pallarel/pallarel/internal/redistest"
	"github.com/pallarel/pallarel/internal/redisurl"
)

func loadEnv(env map[string]string) (Config, error) {
	return Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
}

func TestLoadRedisSettings(t *testing.T) {
	t.Parallel()
	files := redistest.NewTLSFiles(t)
	for _, tc := range []struct {
		name     string
		env      map[string]string
		url      string
		settings redisurl.Settings
	}{
		{"REDIS_PROVIDER names the variable", map[string]string{"REDIS_PROVIDER": "MY_REDIS", "MY_REDIS": "redis://cache:6380/3", "REDIS_URL": "redis://other"},
			"redis://cache:6380/3", redisurl.Settings{}},
		{"REDIS_PROVIDER naming an unset variable falls back to REDIS_URL", map[string]string{"REDIS_PROVIDER": "MY_REDIS", "REDIS_URL": "redis://other"},
			"redis://other", redisurl.Settings{}},
		{"sentinels with a master name", map[string]string{"REDIS_SENTINELS": "s1:26380, s2", "REDIS_SENTINEL_MASTER": "mymaster", "REDIS_SENTINEL_PASSWORD": "sp"},
			"redis://mymaster/0", redisurl.Settings{Sentinels: []string{"s1:26380", "s2:26379"}, SentinelMaster: "mymaster", SentinelPassword: "sp"}},
		{"sentinels, the master named by the URL host", map[string]string{"REDIS_SENTINELS": "s1:26379", "REDIS_URL": "redis://:pw@mymaster/2"},
			"redis://:pw@mymaster/2", redisurl.Settings{Sentinels: []string{"s1:26379"}, SentinelMaster: "mymaster"}},
		{"TLS files", map[string]string{"REDIS_URL": "rediss://cache", "REDIS_TLS_CA_FILE": files.CA, "REDIS_TLS_CERT_FILE": files.ClientCert,
			"REDIS_TLS_KEY_FILE": files.ClientKey, "REDIS_TLS_SERVER_NAME": "cache.internal", "REDIS_TLS_VERIFY": "peer"},
			"rediss://cache", redisurl.Settings{TLS: redisurl.TLS{CAFile: files.CA, CertFile: files.ClientCert, KeyFile: files.ClientKey, ServerName: "cache.internal", Verify: "peer"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadEnv(tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if c.RedisURL != tc.url || !reflect.DeepEqual(c.Redis, tc.settings) {
				t.Fatalf("got %q %+v\nwant %q %+v", c.RedisURL, c.Redis, tc.url, tc.settings)
			}
		})
	}
}

func TestLoadRedisSettingsErrors(t *testing.T) {
	t.Parallel()
	files := redistest.NewTLSFiles(t)
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"REDIS_PROVIDER": "redis://cache"}, "REDIS_PROVIDER: should be the name of the variable"},
		{map[string]string{"REDIS_SENTINELS": "s1:26379"}, "REDIS_SENTINEL_MASTER: required"},
		{map[string]string{"REDIS_URL": "redis://cache", "REDIS_TLS_CA_FILE": files.CA}, "TLS settings need a rediss:// URL"},
		{map[string]string{"REDIS_URL": "rediss://cache", "REDIS_TLS_CA_FILE": files.CA + ".missing"}, "TLS CA file"},
		{map[string]string{"REDIS_URL": "rediss://cache", "REDIS_TLS_CA_FILE": files.ClientKey}, "no PEM certificate"},
		{map[string]string{"REDIS_URL": "rediss://cache", "REDIS_TLS_CERT_FILE": files.ClientCert}, "give both the certificate and the key file"},
		{map[string]string{"REDIS_URL": "rediss://cache", "REDIS_TLS_VERIFY": "maybe"}, `TLS verify "maybe": want peer or none`},
	} {
		_, err := loadEnv(tc.env)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one saying %q", tc.env, err, tc.want)
		}
	}
}
