# The Rails app's job classes, models and settings as it runs them in
# production (../shared/docs/rails-contract.md), for tests that put real Ruby
# Sidekiq 8.0.6 beside Go on one Redis and one MariaDB. Our own code, written
# to behave as the app's: same class names, queues, sidekiq_options, argument
# positions, table writes and Redis writes. Two differences, both for tests:
# the row job sleeps APP_ROW_SLEEP seconds (default 0.002) instead of 3, and
# it writes the row hash as JSON into its file (the app writes random text),
# so a test can tell which row each file of the ZIP came from.
#
# Settings, as the app reads them: REDIS_URL (a bare host as in the app's
# config/redis.yml, or a full redis:// URL), DB_HOST, DB_NAME, DB_USER,
# DB_PASSWORD (mysql2), LOCAL_SAVE (non-blank: keep the ZIP on local disk).
require "csv"
require "digest/sha1"
require "fileutils"
require "json"
require "logger"
require "securerandom"
require "sidekiq"
require "sidekiq/api"
require "active_record"
require "active_job"
require "active_job/queue_adapters/sidekiq_adapter"
require "zip"

redis_url = ENV.fetch("REDIS_URL")
redis_url = "redis://#{redis_url}/0" unless redis_url.include?("://")
Sidekiq.configure_client do |c|
  c.redis = {url: redis_url}
  c.logger = Logger.new($stderr)
end
Sidekiq.configure_server do |c|
  c.redis = {url: redis_url}
end

ActiveRecord::Base.establish_connection(
  adapter: "mysql2", encoding: "utf8mb4", pool: 30,
  host: ENV.fetch("DB_HOST", "127.0.0.1"), database: ENV.fetch("DB_NAME"),
  username: ENV.fetch("DB_USER", "root"), password: ENV["DB_PASSWORD"]
)
ActiveRecord::Base.logger = nil
ActiveJob::Base.queue_adapter = :sidekiq
ActiveJob::Base.logger = Logger.new(IO::NULL)

APP_ROW_SLEEP = Float(ENV.fetch("APP_ROW_SLEEP", "0.002"))

def local_save?
  !ENV["LOCAL_SAVE"].to_s.strip.empty?
end

class ClientReport < ActiveRecord::Base
  enum :report_type, {xlsx: 0, pdf: 1}
  enum :status, {pending: 0, processing: 1, completed: 2, failed: 3}
end

class CsvProcessingStatus < ActiveRecord::Base
end

module QueueRouter
  module_function

  def for_token(token)
    "report-#{Digest::SHA1.hexdigest(token)[0, 16]}"
  end

  TOKEN_AT = {"Report::ProcessCsvRowJob" => 4, "Report::FinalizeReportJob" => 3, "IdleShutdownJob" => 0}

  def belongs?(job, token)
    args = job.args
    return false unless args.is_a?(Array)
    i = TOKEN_AT[job.klass]
    return args.include?(token) if i.nil?
    args.size > i && args[i] == token
  end

  # The token's jobs out of its queue, the schedule set and the retry set.
  def clear_all_jobs_for_token(token)
    Sidekiq::Queue.new(for_token(token)).each { |j| j.delete if belongs?(j, token) }
    Sidekiq::ScheduledSet.new.each { |j| j.delete if belongs?(j, token) }
    Sidekiq::RetrySet.new.each { |j| j.delete if belongs?(j, token) }
    true
  end
end

class SplitCsvJob < ActiveJob::Base
  queue_as :report

  def perform(csv_string, type, report_id)
    csv = CSV.parse(csv_string, headers: true)
    token = SecureRandom.uuid
    queue = QueueRouter.for_token(token)
    path = "/tmp/reports/#{token}"
    CsvProcessingStatus.create!(token:, total_count: csv.size, done_count: 0, queue_name: queue)
    ClientReport.find(report_id).update!(status: :processing, token:)
    csv.each do |row|
      Sidekiq::Client.enqueue_to(queue, Report::ProcessCsvRowJob, row.to_h, type, report_id, path, token)
    end
    Sidekiq::Client.push(
      "class" => Report::FinalizeReportJob,
      "queue" => queue,
      "args" => [path, type, report_id, token, Integer(ENV.fetch("APP_FINALIZE_INTERVAL", "10")), 43200, Time.now.to_i],
      "at" => Time.now.to_f
    )
    # LOCAL_SAVE blank would launch the ECS task here; tests run local.
  end
end

module Report
  class ProcessCsvRowJob
    include Sidekiq::Job
    sidekiq_options queue: :report, retry: 3, dead: true

    def perform(row, type, report_id, path, token)
      FileUtils.mkdir_p(path)
      sleep APP_ROW_SLEEP
      File.write(File.join(path, "random_#{token}_#{SecureRandom.hex(8)}.txt"), JSON.generate(row) + "\n")
      CsvProcessingStatus.where(token:).update_all("done_count = done_count + 1")
    end
  end

  class FinalizeReportJob
    include Sidekiq::Job
    sidekiq_options queue: :report, retry: 3, dead: true

    def perform(path, type, report_id, token, interval_sec = 10, max_wait_sec = 43200, started_at = Time.now.to_i)
      status = CsvProcessingStatus.find_by(token:)
      report = ClientReport.find(report_id)
      return if status&.finalized_at.present? || report.completed?

      if status.nil?
        report.update!(status: :failed)
        return
      elsif Time.now.to_i - started_at < max_wait_sec && status.done_count < status.total_count
        Sidekiq::Client.push(
          "class" => self.class,
          "queue" => status.queue_name || QueueRouter.for_token(token),
          "args" => [path, type, report_id, token, interval_sec, max_wait_sec, started_at],
          "at" => Time.now.to_f + interval_sec
        )
        return
      end

      CsvProcessingStatus.transaction do
        s = CsvProcessingStatus.lock.find_by!(token:)
        break if s.finalized_at.present?
        zip_path = "#{path}_#{type}.zip"
        FileUtils.mkdir_p(path)
        Zip::File.open(zip_path, Zip::File::CREATE) do |zip|
          Dir[File.join(path, "*")].each { |f| zip.add(File.basename(f), f) }
        end
        # S3 (LOCAL_SAVE blank) is not exercised: tests run local, where the
        # app assigns the open File and the column gets its to_s.
        report.file = File.open(zip_path)
        report.count = Dir[File.join(path, "*")].count
        report.status = :completed
        report.save!
        s.update!(finalized_at: Time.current)
      end
      FileUtils.rm_rf(path)
      QueueRouter.clear_all_jobs_for_token(token)
      CsvProcessingStatus.find_by(token:)&.destroy
    rescue => e
      QueueRouter.clear_all_jobs_for_token(token)
      begin
        r = ClientReport.find(report_id)
        r.update!(status: :failed) unless r.completed?
      rescue
      end
      raise e
    end
  end
end

class IdleShutdownJob < ActiveJob::Base
  queue_as :default

  def perform(token)
    status = CsvProcessingStatus.find_by(token:)
    return if status.nil? || status.queue_name.blank?
    if Sidekiq::Queue.new(status.queue_name).size.zero?
      QueueRouter.clear_all_jobs_for_token(token)
      # ECS StopTask here when ECS_CLUSTER is set; tests run local.
    else
      self.class.set(queue: status.queue_name, wait: 30).perform_later(token)
    end
  rescue => e
    Sidekiq.logger.warn("IdleShutdownJob #{token}: #{e.class}: #{e.message}")
  end
end

# The monitors, enqueued by tests with perform_later so that Go runs them;
# Ruby would run the rake tasks' work here.
class DeadLetterMonitorJob < ActiveJob::Base
  queue_as :default
  def perform = nil
end

class ForceShutdownMonitorJob < ActiveJob::Base
  queue_as :default
  def perform = nil
end

class IdleEcsTaskMonitorJob < ActiveJob::Base
  queue_as :default
  def perform = nil
end

def emit(obj)
  $stdout.puts "RAILS_RESULT " + JSON.generate(obj)
  $stdout.flush
end

# A job class of the app that Go does not know (app/jobs/sample_job.rb).
class SampleJob < ActiveJob::Base
  queue_as :default
  def perform(*) = nil
end
