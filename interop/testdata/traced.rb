# Ruby -> Go: a job pushed with W3C trace context in its payload, as
# opentelemetry-instrumentation-sidekiq's client middleware leaves it
# (OpenTelemetry.propagation.inject(job): top-level "traceparent" and
# "tracestate" keys). The values come from the Go test.
require_relative "common"

class TraceContextMiddleware
  include Sidekiq::ClientMiddleware if defined?(Sidekiq::ClientMiddleware)

  def call(_worker_class, job, _queue, _redis_pool)
    job["traceparent"] = ENV.fetch("TRACEPARENT")
    job["tracestate"] = ENV.fetch("TRACESTATE")
    yield
  end
end

Sidekiq.configure_client do |c|
  c.client_middleware { |chain| chain.add TraceContextMiddleware }
end

emit("jid" => Sidekiq::Client.push("class" => "Interop::TracedJob", "queue" => "interop", "args" => ["traced"]),
  "version" => Sidekiq::VERSION)
