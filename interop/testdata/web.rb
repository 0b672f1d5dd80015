# Sidekiq::Web through Rack::MockRequest (no server) on data a Go server
# wrote (web_test.go). MODE=pages GETs every page; MODE=actions and
# MODE=stop press the Web UI's buttons. Both 6.4.1 and 7.3.2 keep a CSRF
# token in the Rack session (session[:csrf]) and accept a POST only with a
# matching "authenticity_token" parameter (the masked token each page's
# forms carry), so every POST first GETs the page with the same session and
# takes the token from its form, as a browser does.
require_relative "common"
require "sidekiq/api"
require "sidekiq/web"
require "rack/mock"

APP = Rack::MockRequest.new(Sidekiq::Web)
SESSION = {}

def get(path)
  r = APP.get(path, "rack.session" => SESSION)
  {"status" => r.status, "body" => r.body, "location" => r.headers["Location"] || r.headers["location"]}
end

def form_token(page)
  body = APP.get(page, "rack.session" => SESSION).body
  body[/name=['"]authenticity_token['"] value=['"]([^'"]+)['"]/, 1] or raise "no authenticity_token on #{page}"
end

def post(page, path, params)
  token = form_token(page)
  r = APP.post(path, "rack.session" => SESSION, :params => params.merge("authenticity_token" => token))
  {"status" => r.status, "location" => r.headers["Location"] || r.headers["location"]}
end

def key_of(set, jid)
  e = set.find { |x| x.jid == jid } or raise "#{jid} not in #{set.name}"
  "#{e.score}-#{e.jid}"
end

out = {}
case ENV.fetch("MODE")
when "pages"
  retry_keys = Sidekiq::RetrySet.new.map { |e| "#{e.score}-#{e.jid}" }
  dead_keys = Sidekiq::DeadSet.new.select(&:jid).map { |e| "#{e.score}-#{e.jid}" }
  paths = %w[/ /busy /queues /queues/waiting /queues/waiting8 /retries /scheduled /morgue /stats /stats/queues]
  paths += retry_keys.map { |k| "/retries/#{k}" } + dead_keys.map { |k| "/morgue/#{k}" }
  paths << "/metrics" if Sidekiq::VERSION >= "7"
  paths << "/metrics/Interop::OkJob" if Sidekiq::VERSION >= "8"
  out["pages"] = paths.to_h { |path| [path, get(path)] }
  out["retry_keys"] = retry_keys
  out["dead_keys"] = dead_keys
  # Without the token the same POST is refused.
  out["forbidden"] = APP.post("/retries/#{retry_keys.first}", "rack.session" => SESSION,
    :params => {"delete" => "Delete"}).status
when "actions"
  retries = Sidekiq::RetrySet.new
  out["retry_now"] = post("/retries", "/retries/#{key_of(retries, ENV.fetch("RETRY_JID"))}", "retry" => "Retry Now")
  out["delete"] = post("/retries", "/retries/#{key_of(retries, ENV.fetch("DELETE_JID"))}", "delete" => "Delete")
  out["kill"] = post("/retries", "/retries/#{key_of(retries, ENV.fetch("KILL_JID"))}", "kill" => "Kill")
  out["dead_retry_now"] = post("/morgue", "/morgue/#{key_of(Sidekiq::DeadSet.new, ENV.fetch("DEAD_JID"))}", "retry" => "Retry Now")
  out["quiet"] = post("/busy", "/busy", "identity" => ENV.fetch("IDENTITY"), "quiet" => "1")
when "stop"
  out["stop"] = post("/busy", "/busy", "identity" => ENV.fetch("IDENTITY"), "stop" => "1")
end
emit(out)
