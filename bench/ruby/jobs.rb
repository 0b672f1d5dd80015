# frozen_string_literal: true

# Job classes of the engine benchmark (bench/engine.sh), for Ruby Sidekiq
# 6.4, 7.x and 8.0. Pallarel::NoopJob does nothing, as the Go benchworker's. A
# server middleware counts finished jobs in memory and a thread publishes the
# count to the Redis key "bench:done" every 5 ms, exactly as the Go
# benchworker does, so both are timed to the same "jobs done" signal.
require "sidekiq"

module Pallarel
  class NoopJob
    include Sidekiq::Worker

    def perform(*); end
  end
end

module Bench
  LOCK = Mutex.new
  DONE = [0]

  # Counts every job that has run, whatever its outcome.
  class Counter
    def call(_job, _payload, _queue)
      yield
    ensure
      LOCK.synchronize { DONE[0] += 1 }
    end
  end
end

# BENCH_LOG_LEVEL=warn (bench/engine.sh's default) drops Sidekiq's INFO
# line per job, as the Go benchworker does at the same setting.
if (level = ENV["BENCH_LOG_LEVEL"])
  Sidekiq.logger.level = Logger.const_get(level.upcase)
end

Sidekiq.configure_server do |config|
  config.server_middleware { |chain| chain.add Bench::Counter }
  config.on(:startup) do
    Thread.new do
      last = -1
      loop do
        sleep 0.005
        n = Bench::LOCK.synchronize { Bench::DONE[0] }
        next if n == last

        Sidekiq.redis { |c| c.set("bench:done", n) }
        last = n
      end
    end
  end
end
