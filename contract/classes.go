package contract

// Class is one job class of the contract: its wire name, the names Go
// callers may also use, where it runs and its sidekiq_options.
type Class struct {
	// Name is the class as the Rails app writes it (Sidekiq's "class", or
	// ActiveJob's "wrapped").
	Name string
	// Aliases are further names registered for it (without Report::).
	Aliases []string
	// Queue is its queue; empty for the row and finalize jobs, which run
	// on their token's queue (router.For).
	Queue string
	// Retry is sidekiq_options retry: how many retries before it is dead,
	// or RetryDefault when the class leaves Sidekiq's default (25).
	Retry int
	// Dead is sidekiq_options dead: true, written on the payload as the
	// app's sidekiq_options write it (Ruby's default is the same).
	Dead bool
	// ActiveJob says it is enqueued through ActiveJob (JobWrapper).
	ActiveJob bool
}

// Names is Name then Aliases, the names to register it under.
func (c Class) Names() []string { return append([]string{c.Name}, c.Aliases...) }

// Is says whether class (a job's handler class) names c.
func (c Class) Is(class string) bool {
	if class == c.Name {
		return true
	}
	for _, a := range c.Aliases {
		if class == a {
			return true
		}
	}
	return false
}

// Queues of the contract.
const (
	// TriggerQueue is where SplitCsvJob (and our own run jobs) run.
	TriggerQueue = "report"
	// DefaultQueue is ActiveJob's default queue, where IdleShutdownJob is
	// enqueued outside a token's queue.
	DefaultQueue = "default"
	// WebhookQueue is the webhook deliveries' own queue, so a receiver that
	// hangs never holds a processor that splits uploads.
	WebhookQueue = "webhook"
)

// RetryDefault is a Retry the class does not declare: the payload keeps
// Sidekiq's default.
const RetryDefault = -1

// The job classes. They are values, never changed after init.
var (
	// Split is SplitCsvJob (ActiveJob, queue "report"): SplitArgs.
	Split = Class{Name: "SplitCsvJob", Queue: TriggerQueue, Retry: RetryDefault, ActiveJob: true}
	// Row is Report::ProcessCsvRowJob (token queue, retry 3, dead true): RowArgs.
	Row = Class{Name: "Report::ProcessCsvRowJob", Aliases: []string{"ProcessCsvRowJob"}, Retry: 3, Dead: true}
	// Finalize is Report::FinalizeReportJob (token queue, retry 3, dead true): FinalizeArgs.
	Finalize = Class{Name: "Report::FinalizeReportJob", Aliases: []string{"FinalizeReportJob"}, Retry: 3, Dead: true}
	// Idle is IdleShutdownJob (ActiveJob): [token].
	Idle = Class{Name: "IdleShutdownJob", Queue: DefaultQueue, Retry: RetryDefault, ActiveJob: true}
	// Webhook is our run-ended delivery (queue "webhook", retry 10: count⁴+15 s
	// apart, about 7 hours in all): [url, body].
	Webhook = Class{Name: "Pallarel::RunWebhookJob", Queue: WebhookQueue, Retry: 10}
	// CancelCleanup sweeps a cancelled run's leftovers (queue "report"): [token].
	CancelCleanup = Class{Name: "Pallarel::CancelCleanupJob", Queue: TriggerQueue, Retry: RetryDefault}
)
