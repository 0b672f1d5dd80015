# frozen_string_literal: true

# Times Sidekiq::Client.push_bulk of N no-op jobs (env N, default 100000),
# RUNS times (default 3), on REDIS_URL. Prints one RESULT line per run.
require "sidekiq"
require_relative "jobs"

n = Integer(ENV.fetch("N", "100000"))
runs = Integer(ENV.fetch("RUNS", "3"))
name = ENV.fetch("NAME", "ruby#{Sidekiq::VERSION}")
args = Array.new(n) { [] }
runs.times do |i|
  Sidekiq.redis { |c| c.del("queue:pushbench") }
  t = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  Sidekiq::Client.push_bulk("class" => Pallarel::NoopJob, "args" => args, "queue" => "pushbench")
  dt = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t
  len = Sidekiq.redis { |c| c.llen("queue:pushbench") }
  raise "queue holds #{len} jobs, want #{n}" unless len == n

  puts format("RESULT push name=%s version=%s run=%d jobs=%d secs=%.4f rate=%.0f", name, Sidekiq::VERSION, i + 1, n, dt, n / dt)
end
Sidekiq.redis { |c| c.del("queue:pushbench") }
