# Shared setup for the interop scripts: Redis from REDIS_URL for Sidekiq 6.4.1
# (which reads it itself) and 7.3.2 (configured explicitly), logs on stderr,
# and emit, which prints the one result line the Go test decodes.
require "json"
require "logger"
require "sidekiq"

SIDEKIQ7 = Sidekiq::VERSION >= "7"

if SIDEKIQ7
  Sidekiq.configure_client do |c|
    c.redis = {url: ENV.fetch("REDIS_URL")}
    c.logger = Logger.new($stderr)
  end
  Sidekiq.configure_server do |c|
    c.redis = {url: ENV.fetch("REDIS_URL")}
  end
else
  Sidekiq.logger = Logger.new($stderr) unless Sidekiq.server?
end

def emit(obj)
  $stdout.puts "INTEROP_RESULT " + JSON.generate(obj)
  $stdout.flush
end

# rpush appends a JSON value to a Redis list with either Redis client.
def rpush(key, value)
  Sidekiq.redis do |c|
    if SIDEKIQ7
      c.call("RPUSH", key, JSON.generate(value))
    else
      c.rpush(key, JSON.generate(value))
    end
  end
end
