package server

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// up is GET /up, Rails 8's health check: 200 "OK" while the process serves.
func (s *Server) up(c *gin.Context) { c.String(http.StatusOK, "OK") }

// healthz is the liveness probe: the process answers.
func (s *Server) healthz(c *gin.Context) { c.String(http.StatusOK, "ok") }

// readyz is the readiness probe: Redis answers PING and the database a
// ping, each within 2 seconds. 503 names what failed.
func (s *Server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	checks := []struct {
		name string
		err  error
	}{{"redis", s.pingRedis(ctx)}, {"database", s.pingDB(ctx)}}
	status := http.StatusOK
	var lines []string
	res := gin.H{}
	for _, ch := range checks {
		if ch.err != nil {
			status = http.StatusServiceUnavailable
			s.log.Warn("readiness check failed", "check", ch.name, "err", ch.err)
			lines = append(lines, ch.name+": fail")
			res[ch.name] = "fail"
			continue
		}
		lines = append(lines, ch.name+": ok")
		res[ch.name] = "ok"
	}
	if wantsJSON(c) {
		c.JSON(status, res)
		return
	}
	c.String(status, strings.Join(lines, "\n")+"\n")
}

func (s *Server) pingRedis(ctx context.Context) error {
	conn, err := s.d.Pool.GetContext(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Do("PING")
	return err
}

func (s *Server) pingDB(ctx context.Context) error {
	return s.d.DB.Ping(ctx)
}
