# Ruby's own Sidekiq Web UI on Pallarel's Redis, to compare with Go's /sidekiq.
# Works with Sidekiq 6.4.1 (Rack 2), 7.3.2 and 8.0.x (Rack 3). Its version
# must match the server's SIDEKIQ_DIALECT (8 by default): a 6.x or 7.x UI
# misreads Sidekiq 8 data. `run` beside this file finds that version:
#
#   REDIS_URL=redis://127.0.0.1:6379/0 deploy/ruby-web/run --sidekiq 8 -p 9292
#   REDIS_URL=redis://127.0.0.1:6379/0 puma -p 9292 deploy/ruby-web/config.ru   # a Sidekiq 8 Ruby
#
# Sidekiq::Web needs a Rack session (its CSRF token lives there). Rack 2
# ships Rack::Session::Cookie; Rack 3 moved it to the rack-session gem.
# Without that gem a small in-memory session (one random id per browser in
# a cookie) stands in: enough for one person watching a queue.
require "securerandom"
require "sidekiq"
require "sidekiq/web"

session = begin
  require "rack/session"
  :cookie
rescue LoadError
  begin
    require "rack/session/cookie"
    :cookie
  rescue LoadError
    :memory
  end
end

# MemorySession keeps each browser's session in this process.
class MemorySession
  COOKIE = "pallarel.ruby-web"
  MAX = 1000

  def initialize(app)
    @app = app
    @sessions = {}
    @lock = Mutex.new
  end

  def call(env)
    id = Rack::Request.new(env).cookies[COOKIE]
    env["rack.session"] = @lock.synchronize do
      id = SecureRandom.hex(16) unless id && @sessions.key?(id)
      @sessions.shift if @sessions.size >= MAX && !@sessions.key?(id)
      @sessions[id] ||= {}
    end
    status, headers, body = @app.call(env)
    res = Rack::Response.new(body, status, headers)
    res.set_cookie(COOKIE, {value: id, path: "/", httponly: true, same_site: :strict})
    res.finish
  end
end

Sidekiq.configure_client { |c| c.redis = {url: ENV.fetch("REDIS_URL")} }
if session == :cookie
  use Rack::Session::Cookie, secret: ENV.fetch("SESSION_SECRET") { SecureRandom.hex(32) }, same_site: true, max_age: 86400
else
  use MemorySession
end
run Sidekiq::Web
