package jobs

import (
	"context"
	"fmt"

	"github.com/pallarel/pallarel/contract"
	"github.com/pallarel/pallarel/run/webhook"
)

// newNotifier builds the run-end webhook part from the pipeline's deps.
func (p *Pipeline) newNotifier() (*webhook.Notifier, error) {
	return webhook.New(webhook.Params{
		Runs: p.d.DB, Pool: p.d.Pool, Push: p.pushContract,
		URL: p.d.WebhookURL, Secret: p.d.WebhookSecret, Egress: p.d.WebhookEgress, Proxy: p.d.WebhookProxy,
		Logger: p.log, Now: p.d.Now,
	})
}

// pushContract pushes a job of the contract in this pipeline's dialect.
func (p *Pipeline) pushContract(ctx context.Context, c contract.Job) error {
	j, err := toSidekiq(p.d.Client.Dialect(), c)
	if err != nil {
		return fmt.Errorf("build %s: %w", c.Class.Name, err)
	}
	_, err = p.d.Client.Push(ctx, j)
	return err
}

// runEnded is called once a run has ended: its webhook, if it has one.
func (p *Pipeline) runEnded(ctx context.Context, token string) { p.hooks.RunEnded(ctx, token) }
