# A hostile (or buggy) Ruby client: real Sidekiq's client pushes jobs onto a
# live run's token queue that the run's worker must refuse without losing
# a real row. Prints one INTEROP_RESULT line: name => jid.
require "json"
require "logger"
require "sidekiq"

Sidekiq.configure_client do |c|
  c.redis = {url: ENV.fetch("REDIS_URL")}
  c.logger = Logger.new($stderr)
end

q = ENV.fetch("QUEUE")
token = ENV.fetch("TOKEN")
other = ENV.fetch("OTHER_TOKEN")
out = {}
# An unknown class: Ruby's server raises NameError and retries it.
out["unknown class"] = Sidekiq::Client.push("class" => "Hostile::NoSuchJob", "queue" => q, "args" => [1], "retry" => 1)
# Wrong types: a string for the row hash, a hash for the report id.
out["wrong types"] = Sidekiq::Client.push("class" => "Report::ProcessCsvRowJob", "queue" => q,
  "args" => ["not a hash", "text", {"id" => 1}, "/tmp", token], "retry" => 1)
# A row job naming another token, pushed on this run's queue.
out["other token"] = Sidekiq::Client.push("class" => "Report::ProcessCsvRowJob", "queue" => q,
  "args" => [{"個別識別番号" => "EVIL-000001"}, "text", 1, "/tmp", other], "retry" => 1)
$stdout.puts "INTEROP_RESULT " + JSON.generate(out)
$stdout.flush
