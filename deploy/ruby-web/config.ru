require "securerandom"
require "rack/session"
require "sidekiq"
require "sidekiq/web"

Sidekiq.configure_client { |c| c.redis = { url: ENV.fetch("REDIS_URL") } }
use Rack::Session::Cookie, secret: SecureRandom.hex(32), same_site: true, max_age: 86400
run Sidekiq::Web
