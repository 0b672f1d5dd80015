package server

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/pallarel/pallarel/sidekiq"
)

// pageSize is how many jobs a dashboard list shows per page.
const pageSize = 25

// setPaths maps the dashboard's URL names (as Sidekiq's Web UI spells them)
// to the sorted sets.
var setPaths = map[string]sidekiq.SetName{
	"retries":   sidekiq.RetrySet,
	"scheduled": sidekiq.ScheduledSet,
	"morgue":    sidekiq.DeadSet,
}

// dashboardRoutes mounts the Sidekiq dashboard on g (/sidekiq). Every POST
// redirects back with 303, as the Web UI does.
func (s *Server) dashboardRoutes(g *gin.RouterGroup) {
	g.GET("", s.dashHome)
	g.GET("/", s.dashHome)
	g.GET("/busy", s.dashBusy)
	g.POST("/busy", s.dashSignal)
	g.GET("/queues", s.dashQueues)
	g.GET("/queues/:name", s.dashQueue)
	g.POST("/queues/:name", s.dashClearQueue)
	g.POST("/queues/:name/delete", s.dashDeleteQueueJob)
	for path := range setPaths {
		g.GET("/"+path, s.dashSet(path))
		g.POST("/"+path, s.dashSetBulk(path))
		g.POST("/"+path+"/:key", s.dashSetEntry(path))
	}
}

func (s *Server) dashPage(c *gin.Context, nav, page string, data any) {
	l := lang(c)
	s.render(c, http.StatusOK, page, pageData{Lang: l, Title: "Sidekiq", CSRF: c.GetString(csrfCtxKey), Nav: nav, Data: data})
}

// back redirects to a dashboard path after a POST.
func back(c *gin.Context, path string) {
	c.Redirect(http.StatusSeeOther, "/sidekiq"+path)
}

func pageParam(c *gin.Context) int {
	p, err := strconv.Atoi(c.Query("page"))
	if err != nil || p < 1 {
		return 1
	}
	return p
}

type homeView struct {
	Stats   sidekiq.Stats
	History []sidekiq.DayStat // newest first, as the table shows it
	Bars    []dayBar          // oldest first, for the chart
	Width   int
	Queues  []sidekiq.QueueInfo
}

// dayBar is one day of the history chart, in a 100-unit-high SVG box.
type dayBar struct {
	sidekiq.DayStat
	X, FX, PY, PH, FY, FH int64
}

func historyBars(hist []sidekiq.DayStat) []dayBar {
	var top int64
	for _, d := range hist {
		top = max(top, d.Processed, d.Failed)
	}
	h := func(v int64) int64 {
		if top == 0 {
			return 0
		}
		return v * 100 / top
	}
	out := make([]dayBar, 0, len(hist))
	for i := len(hist) - 1; i >= 0; i-- {
		d := hist[i]
		x := int64(len(out)) * 10
		out = append(out, dayBar{DayStat: d, X: x + 1, FX: x + 5, PH: h(d.Processed), PY: 100 - h(d.Processed), FH: h(d.Failed), FY: 100 - h(d.Failed)})
	}
	return out
}

func (s *Server) dashHome(c *gin.Context) {
	ctx := c.Request.Context()
	st, err := s.d.API.Stats(ctx)
	if err != nil {
		s.fail(c, err)
		return
	}
	hist, err := s.d.API.History(ctx, 30)
	if err != nil {
		s.fail(c, err)
		return
	}
	v := homeView{Stats: st, History: hist, Bars: historyBars(hist), Width: 10 * len(hist)}
	if v.Queues, err = s.d.API.Queues(ctx); err != nil {
		s.fail(c, err)
		return
	}
	s.dashPage(c, "home", "dash_home.html", v)
}

type busyView struct {
	Summary   busySummary
	Processes []sidekiq.Process
	Work      []workView
}

// busySummary is the Busy page's header, counted as Sidekiq's Web UI does
// (busy.erb): Busy is WorkSet#size, the sum of each live process's "busy"
// field in its heartbeat hash, not the entries of <identity>:work (those
// lag a heartbeat behind and miss processes that do not write them).
type busySummary struct {
	Processes, Threads, Busy, Utilization int
	RSSKB                                 int64
}

// RSS is counted once per OS process (hostname and pid): an all-in-one
// server runs several Sidekiq identities (the report worker, one per token
// queue) in one process, each reporting that process's RSS.
func summarize(ps []sidekiq.Process) busySummary {
	var s busySummary
	seen := map[string]bool{}
	for _, p := range ps {
		s.Processes++
		s.Threads += p.Concurrency
		s.Busy += p.Busy
		if os := p.Hostname + ":" + strconv.Itoa(p.PID); !seen[os] {
			seen[os] = true
			s.RSSKB += p.RSSKB
		}
	}
	if s.Threads > 0 {
		s.Utilization = int(float64(s.Busy)*100/float64(s.Threads) + 0.5)
	}
	return s
}

type workView struct {
	Process, TID, Queue, JID, Class, Args string
	RunAt                                 time.Time
}

func (s *Server) dashBusy(c *gin.Context) {
	ctx := c.Request.Context()
	ps, err := s.d.API.Processes(ctx)
	if err != nil {
		s.fail(c, err)
		return
	}
	ws, err := s.d.API.Workers(ctx)
	if err != nil {
		s.fail(c, err)
		return
	}
	v := busyView{Processes: ps, Summary: summarize(ps)}
	for _, w := range ws {
		wv := workView{Process: w.Identity, TID: w.TID, Queue: w.Queue, RunAt: w.RunAt}
		if w.Job != nil {
			wv.JID, wv.Class, wv.Args = w.Job.JID, w.Job.DisplayClass(), s.displayArgs(w.Job)
		}
		v.Work = append(v.Work, wv)
	}
	s.dashPage(c, "busy", "dash_busy.html", v)
}

// dashSignal sends quiet (TSTP) or stop (TERM) to one process.
func (s *Server) dashSignal(c *gin.Context) {
	identity := c.PostForm("identity")
	var sig string
	switch c.PostForm("action") {
	case "quiet":
		sig = "TSTP"
	case "stop":
		sig = "TERM"
	default:
		s.fail(c, userErr(http.StatusBadRequest, "err_bad_request", "action"))
		return
	}
	if identity == "" {
		s.fail(c, userErr(http.StatusBadRequest, "err_bad_request", "identity"))
		return
	}
	if err := s.d.API.Signal(c.Request.Context(), identity, sig); err != nil {
		s.fail(c, err)
		return
	}
	s.log.Info("dashboard signal", "identity", identity, "signal", sig)
	back(c, "/busy")
}

func (s *Server) dashQueues(c *gin.Context) {
	qs, err := s.d.API.Queues(c.Request.Context())
	if err != nil {
		s.fail(c, err)
		return
	}
	s.dashPage(c, "queues", "dash_queues.html", qs)
}

// entryView is one job in a dashboard list.
type entryView struct {
	Key, JID, Class, Queue, Args, Raw string
	ErrorClass, ErrorMessage          string
	RetryCount                        int
	At                                time.Time
	Bad                               bool // not a readable job
}

func (s *Server) makeEntry(e sidekiq.Entry, scored bool) entryView {
	v := entryView{Key: e.Key(), Raw: string(e.Raw)}
	if scored {
		v.At = time.Unix(0, int64(e.Score*1e9)).UTC()
	}
	if e.Job == nil {
		v.Bad, v.Class = true, "(unreadable)"
		v.Args = truncate(string(e.Raw), 200)
		if s.d.MaskJobArgs {
			v.Args, v.Raw = maskedArgs, ""
		}
		return v
	}
	j := e.Job
	v.JID, v.Class, v.Queue, v.Args = j.JID, j.DisplayClass(), j.Queue, s.displayArgs(j)
	if s.d.MaskJobArgs {
		v.Raw = "" // the payload holds the arguments too
	}
	v.ErrorClass, v.ErrorMessage = j.StringField("error_class"), truncate(j.StringField("error_message"), 300)
	_, _ = j.Field("retry_count", &v.RetryCount)
	return v
}

// maskedArgs replaces job arguments on the dashboard with
// Deps.MaskJobArgs: row jobs carry customers' names and addresses.
const maskedArgs = "[masked]"

// displayArgs shows the handler's arguments (ActiveJob's envelope undone),
// or maskedArgs.
func (s *Server) displayArgs(j *sidekiq.Job) string {
	if s.d.MaskJobArgs {
		return maskedArgs
	}
	args, err := j.Arguments()
	if err != nil {
		args = j.Args
	}
	parts := make([]string, len(args))
	for i, a := range args {
		parts[i] = string(a)
	}
	return truncate(strings.Join(parts, ", "), 200)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

type listView struct {
	Name       string // queue name, or the set's path
	Title      string
	Size       int64
	Page, Last int
	Entries    []entryView
	Scored     bool // a sorted set: entries have a time and per-entry actions
	CanKill    bool
	Masked     bool // arguments hidden: queue deletes go by JID, not payload
}

func (v *listView) paginate(page int) {
	v.Page = page
	v.Last = max(1, int((v.Size+pageSize-1)/pageSize))
}

func (s *Server) dashQueue(c *gin.Context) {
	ctx := c.Request.Context()
	name := c.Param("name")
	if err := sidekiq.ValidQueueName(name); err != nil {
		s.fail(c, userErr(http.StatusBadRequest, "err_bad_request", "queue"))
		return
	}
	var size int64
	qs, err := s.d.API.Queues(ctx)
	if err != nil {
		s.fail(c, err)
		return
	}
	for _, q := range qs {
		if q.Name == name {
			size = q.Size
		}
	}
	page := pageParam(c)
	es, err := s.d.API.QueueJobs(ctx, name, (page-1)*pageSize, pageSize)
	if err != nil {
		s.fail(c, err)
		return
	}
	v := listView{Name: name, Title: name, Size: size, Masked: s.d.MaskJobArgs}
	v.paginate(page)
	for _, e := range es {
		v.Entries = append(v.Entries, s.makeEntry(e, false))
	}
	s.dashPage(c, "queues", "dash_queue.html", v)
}

// dashClearQueue deletes a whole queue, as the Web UI's "Delete" on a queue.
func (s *Server) dashClearQueue(c *gin.Context) {
	name := c.Param("name")
	if c.PostForm("action") != "clear" {
		s.fail(c, userErr(http.StatusBadRequest, "err_bad_request", "action"))
		return
	}
	if err := s.d.API.ClearQueue(c.Request.Context(), name); err != nil {
		s.fail(c, err)
		return
	}
	s.log.Info("dashboard cleared queue", "queue", name)
	back(c, "/queues")
}

// dashDeleteQueueJob deletes one job from a queue by its exact payload,
// which the form carries as key_val (the Web UI's name for it).
func (s *Server) dashDeleteQueueJob(c *gin.Context) {
	name := c.Param("name")
	raw := c.PostForm("key_val")
	if raw == "" && c.PostForm("jid") != "" {
		// Masked pages do not carry the payload: find it by JID.
		found, err := s.queueJobByJID(c, name, c.PostForm("jid"))
		if err != nil {
			s.fail(c, err)
			return
		}
		raw = found
	}
	if raw == "" {
		s.fail(c, userErr(http.StatusBadRequest, "err_bad_request", "key_val"))
		return
	}
	ok, err := s.d.API.DeleteQueueJob(c.Request.Context(), name, []byte(raw))
	if err != nil {
		s.fail(c, err)
		return
	}
	if !ok {
		s.fail(c, sidekiq.ErrNotFound)
		return
	}
	back(c, "/queues/"+url.PathEscape(name))
}

var setTitles = map[string]string{"retries": "Retries", "scheduled": "Scheduled", "morgue": "Dead"}

func (s *Server) dashSet(path string) gin.HandlerFunc {
	set := setPaths[path]
	return func(c *gin.Context) {
		ctx := c.Request.Context()
		size, err := s.d.API.SetSize(ctx, set)
		if err != nil {
			s.fail(c, err)
			return
		}
		page := pageParam(c)
		es, err := s.d.API.SetEntries(ctx, set, (page-1)*pageSize, pageSize)
		if err != nil {
			s.fail(c, err)
			return
		}
		v := listView{Name: path, Title: setTitles[path], Size: size, Scored: true, CanKill: set != sidekiq.DeadSet}
		v.paginate(page)
		for _, e := range es {
			v.Entries = append(v.Entries, s.makeEntry(e, true))
		}
		s.dashPage(c, path, "dash_set.html", v)
	}
}

// dashSetEntry acts on one entry: retry (run now; "add to queue" for
// scheduled jobs), delete, or kill (retry and scheduled only).
func (s *Server) dashSetEntry(path string) gin.HandlerFunc {
	set := setPaths[path]
	return func(c *gin.Context) {
		ctx := c.Request.Context()
		score, jid, err := sidekiq.ParseKey(c.Param("key"))
		if err != nil {
			s.fail(c, &httpError{status: http.StatusBadRequest, key: "err_bad_request", err: err})
			return
		}
		e, err := s.d.API.Find(ctx, set, score, jid)
		if err != nil {
			s.fail(c, err)
			return
		}
		switch c.PostForm("action") {
		case "retry":
			err = s.d.API.RetryNow(ctx, set, e)
		case "delete":
			var ok bool
			if ok, err = s.d.API.Delete(ctx, set, e); err == nil && !ok {
				err = sidekiq.ErrNotFound
			}
		case "kill":
			if set == sidekiq.DeadSet {
				err = userErr(http.StatusBadRequest, "err_bad_request", "kill")
				break
			}
			err = s.d.API.Kill(ctx, set, e)
		default:
			err = userErr(http.StatusBadRequest, "err_bad_request", "action")
		}
		if err != nil {
			s.fail(c, err)
			return
		}
		s.log.Info("dashboard job action", "set", string(set), "jid", jid, "action", c.PostForm("action"))
		back(c, "/"+path)
	}
}

// dashSetBulk is "Retry all" / "Delete all" / "Kill all".
func (s *Server) dashSetBulk(path string) gin.HandlerFunc {
	set := setPaths[path]
	return func(c *gin.Context) {
		ctx := c.Request.Context()
		action := c.PostForm("action")
		var err error
		switch action {
		case "delete_all":
			err = s.d.API.ClearSet(ctx, set)
		case "retry_all":
			err = s.eachEntry(c, set, func(e sidekiq.Entry) error { return s.d.API.RetryNow(ctx, set, e) })
		case "kill_all":
			if set == sidekiq.DeadSet {
				err = userErr(http.StatusBadRequest, "err_bad_request", "kill_all")
				break
			}
			err = s.eachEntry(c, set, func(e sidekiq.Entry) error { return s.d.API.Kill(ctx, set, e) })
		default:
			err = userErr(http.StatusBadRequest, "err_bad_request", "action")
		}
		if err != nil {
			s.fail(c, err)
			return
		}
		s.log.Info("dashboard bulk action", "set", string(set), "action", action)
		back(c, "/"+path)
	}
}

// eachEntry applies f to every entry, a page at a time from the front, as
// f removes them. Entries that stay (unreadable payloads, or ones another
// client moved meanwhile) are skipped so the loop ends.
func (s *Server) eachEntry(c *gin.Context, set sidekiq.SetName, f func(sidekiq.Entry) error) error {
	ctx := c.Request.Context()
	skip := 0
	for {
		es, err := s.d.API.SetEntries(ctx, set, skip, 100)
		if err != nil {
			return err
		}
		if len(es) == 0 {
			return nil
		}
		for _, e := range es {
			if e.Job == nil {
				skip++
				continue
			}
			if err := f(e); err != nil {
				if errors.Is(err, sidekiq.ErrNotFound) {
					continue
				}
				skip++
				s.log.Warn("dashboard bulk action on one job", "set", string(set), "jid", e.Job.JID, "err", err)
			}
		}
	}
}

// queueJobByJID returns the exact payload of the job jid in queue name,
// looking through the first 10,000 jobs (a page delete acts on what the
// page showed).
func (s *Server) queueJobByJID(c *gin.Context, name, jid string) (string, error) {
	for start := 0; start < 10_000; start += 500 {
		es, err := s.d.API.QueueJobs(c.Request.Context(), name, start, 500)
		if err != nil {
			return "", err
		}
		for _, e := range es {
			if e.Job != nil && e.Job.JID == jid {
				return string(e.Raw), nil
			}
		}
		if len(es) < 500 {
			break
		}
	}
	return "", sidekiq.ErrNotFound
}
