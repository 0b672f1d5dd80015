# Sidekiq::Web's /stats (the numbers of the Web UI's dashboard) through
# Rack::MockRequest, on the Redis of REDIS_URL, for webui_test.go. Works
# with Sidekiq 6.4.1 (reads REDIS_URL itself) and 7.3.2 (configured here).
require "json"
require "logger"
require "sidekiq"
if Sidekiq::VERSION >= "7"
  Sidekiq.configure_client do |c|
    c.redis = {url: ENV.fetch("REDIS_URL")}
    c.logger = Logger.new($stderr)
  end
end
require "sidekiq/web"
require "rack/mock"

r = Rack::MockRequest.new(Sidekiq::Web).get("/stats", "rack.session" => {})
raise "GET /stats: #{r.status}: #{r.body}" unless r.status == 200
$stdout.puts "E2E_RESULT " + JSON.generate({"version" => Sidekiq::VERSION, "stats" => JSON.parse(r.body)})
$stdout.flush
