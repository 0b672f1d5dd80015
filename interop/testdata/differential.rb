# Differential runs for Sidekiq 7.3.2 and 8.0.6 (differential_test.go): each
# case's payload goes through Ruby's own Processor (fetch → dispatch → retry
# → ack), the launcher's stats flush and the metrics tracker's flush, or
# through the scheduled poller's Enq, on a scratch database; then every key
# the run left is copied to the case's own database for the Go test to read.
#
# DIFF_CASES is a JSON file: [{"name", "db", "queue", "payload", "schedule"}].
# MODE=strict instead reports which arguments strict_args refuses; MODE=version
# the Sidekiq version and each process's version as the Web UI compares them.
require_relative "common"
require "sidekiq/processor"
require "sidekiq/fetch"
require "sidekiq/launcher"
require "sidekiq/scheduled"
require "sidekiq/metrics/tracking"

class DiffOkJob
  include Sidekiq::Job

  def perform(*args)
  end
end

class DiffFailJob
  include Sidekiq::Job

  def perform(*args)
    raise(args.first || "boom")
  end
end

config = Sidekiq.default_configuration
config.logger = Logger.new($stderr, level: Logger::WARN)

if ENV["MODE"] == "strict"
  Sidekiq.strict_args!
  out = {}
  nest = ->(n) { (n == 1) ? [] : [nest.(n - 1)] } # an array n levels deep
  {"time" => [Time.at(0)], "int_keys" => [{1 => 2}], "symbol" => [:sym],
   "string_keys" => [{"a" => 1}], "nested" => [[1, {"b" => [nil, true, 1.5]}]],
   # the job hash and args array are 2 more: 100 and 101 levels in all
   "deep_100" => [nest.(98)], "deep_101" => [nest.(99)]}.each do |name, args|
    Sidekiq::Client.push("class" => "DiffOkJob", "queue" => "strict", "args" => args)
    out[name] = "accepted"
  rescue ArgumentError, JSON::JSONError
    out[name] = "refused"
  end
  emit(out)
  exit
end

if ENV["MODE"] == "version"
  require "sidekiq/api"
  emit({"sidekiq" => Sidekiq::VERSION,
        "processes" => Sidekiq::ProcessSet.new.map { |p| {"version" => p["version"], "labels" => p["labels"]} }})
  exit
end

tracker = Sidekiq::Metrics::ExecutionTracker.new(config)
config.server_middleware { |chain| chain.add Sidekiq::Metrics::Middleware, tracker }
capsule = config.default_capsule
launcher = Sidekiq::Launcher.new(config)

JSON.parse(File.read(ENV.fetch("DIFF_CASES"))).each do |c|
  config.redis { |r| r.call("FLUSHDB") }
  if c["schedule"]
    config.redis { |r| r.call("ZADD", "schedule", (Time.now.to_f - 1).to_s, c["payload"]) }
    Sidekiq::Scheduled::Enq.new(config).enqueue_jobs
  else
    queue = c.fetch("queue")
    jobstr = config.redis do |r|
      r.call("SADD", "queues", queue)
      r.call("LPUSH", "queue:#{queue}", c["payload"])
      r.call("RPOP", "queue:#{queue}")
    end
    processor = Sidekiq::Processor.new(capsule) { |*| }
    begin
      processor.send(:process, Sidekiq::BasicFetch::UnitOfWork.new("queue:#{queue}", jobstr, config))
    rescue Exception # the job's own error, re-raised after it was handled
    end
    launcher.send(:flush_stats)
    tracker.flush
  end
  config.redis do |r|
    r.call("KEYS", "*").each { |k| r.call("COPY", k, k, "DB", c.fetch("db").to_s, "REPLACE") }
  end
end
emit({"version" => Sidekiq::VERSION})
