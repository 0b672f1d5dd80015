# Shared setup for the Rails-side scripts (Sidekiq 7.3.2 + ActiveJob 7.2 in
# the sidekiq-peers chroot): Redis from REDIS_URL, logs on stderr.
require "json"
require "logger"
require "sidekiq"
require "active_job"

Sidekiq.configure_client do |c|
  c.redis = {url: ENV.fetch("REDIS_URL")}
  c.logger = Logger.new($stderr)
end
Sidekiq.configure_server do |c|
  c.redis = {url: ENV.fetch("REDIS_URL")}
end
ActiveJob::Base.queue_adapter = :sidekiq
ActiveJob::Base.logger = Logger.new(IO::NULL)

def rpush(key, value)
  Sidekiq.redis { |c| c.call("RPUSH", key, JSON.generate(value)) }
end
