# Ruby's Sidekiq API reading what a Go server wrote (api_test.go).
# LATENCY_QUEUES names the queues whose Sidekiq::Queue#latency to report.
require_relative "common"
require "sidekiq/api"

# seconds reads a failure timestamp: float seconds up to 7.x, integer
# milliseconds from 8.0 (job_retry.rb time_for).
def seconds(v)
  v.is_a?(Integer) ? v / 1000.0 : v
end

def record(e)
  {
    "jid" => e.jid, "klass" => e.klass, "display_class" => e.display_class, "queue" => e.queue,
    "args" => e.args, "error_message" => e["error_message"], "error_class" => e["error_class"],
    "retry_count" => e["retry_count"], "failed_at" => seconds(e["failed_at"]), "retried_at" => seconds(e["retried_at"]),
    "created_at" => e.created_at.to_f, "enqueued_at" => e.enqueued_at&.to_f,
    "error_backtrace" => e["error_backtrace"] && e.error_backtrace
  }
end

def sorted(e)
  record(e).merge("at" => e.at.to_f, "score" => e.score)
end

stats = Sidekiq::Stats.new
out = {"now" => Time.now.to_f}
out["stats"] = {
  "processed" => stats.processed, "failed" => stats.failed, "scheduled_size" => stats.scheduled_size,
  "retry_size" => stats.retry_size, "dead_size" => stats.dead_size, "processes_size" => stats.processes_size,
  "workers_size" => stats.workers_size, "enqueued" => stats.enqueued
}
out["processes"] = Sidekiq::ProcessSet.new.map do |p|
  %w[identity hostname pid tag concurrency queues busy beat quiet started_at version labels].to_h { |k| [k, p[k]] }
end

workers = []
Sidekiq::Workers.new.each do |process_id, thread_id, work|
  # 6.4.1 yields a Hash (payload already parsed); 7.3.2 a Sidekiq::Work.
  queue, run_at, job = if work.is_a?(Hash)
    [work["queue"], work["run_at"], Sidekiq::JobRecord.new(work["payload"])]
  else
    [work.queue, work.run_at.to_f, work.job]
  end
  workers << {"process" => process_id, "thread" => thread_id, "queue" => queue, "run_at" => run_at,
              "jid" => job.jid, "klass" => job.klass, "args" => job.args}
end
out["workers"] = workers
out["retries"] = Sidekiq::RetrySet.new.map { |e| sorted(e) }
out["dead"] = Sidekiq::DeadSet.new.map { |e| sorted(e) }
out["scheduled"] = Sidekiq::ScheduledSet.new.map { |e| sorted(e) }
out["queues"] = Sidekiq::Queue.all.map(&:name).sort
out["latency"] = ENV.fetch("LATENCY_QUEUES", "").split(",").to_h do |q|
  queue = Sidekiq::Queue.new(q)
  [q, {"latency" => queue.latency, "size" => queue.size, "jids" => queue.map(&:jid)}]
end
emit(out)
