package sidekiq

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// The class names Rails' ActiveJob writes for a Sidekiq job: Sidekiq 8's own
// adapter and, up to Sidekiq 7.3, Rails' built-in adapter. Both run here.
const (
	ActiveJobWrapper       = "Sidekiq::ActiveJob::Wrapper"
	ActiveJobLegacyWrapper = "ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper"
)

// IsActiveJob reports whether the job is an ActiveJob envelope.
func (j *Job) IsActiveJob() bool {
	return j.Class == ActiveJobWrapper || j.Class == ActiveJobLegacyWrapper
}

// Envelope is ActiveJob's serialized job (args[0] of a wrapper job), as
// ActiveJob::Core#serialize writes it.
type Envelope struct {
	JobClass            string            `json:"job_class"`
	JobID               string            `json:"job_id"`
	ProviderJobID       *string           `json:"provider_job_id"`
	QueueName           string            `json:"queue_name"`
	Priority            *int              `json:"priority"`
	Arguments           []json.RawMessage `json:"arguments"`
	Executions          int               `json:"executions"`
	ExceptionExecutions map[string]int    `json:"exception_executions"`
	Locale              string            `json:"locale"`
	Timezone            *string           `json:"timezone"`
	EnqueuedAt          string            `json:"enqueued_at"`
	ScheduledAt         *string           `json:"scheduled_at"`
}

// Envelope decodes the ActiveJob envelope of a wrapper job.
func (j *Job) Envelope() (*Envelope, error) {
	if !j.IsActiveJob() {
		return nil, fmt.Errorf("%s is not an ActiveJob wrapper", j.Class)
	}
	if len(j.Args) != 1 {
		return nil, fmt.Errorf("%w: ActiveJob wrapper wants one envelope argument, got %d", ErrBadArgs, len(j.Args))
	}
	var e Envelope
	if err := json.Unmarshal(j.Args[0], &e); err != nil {
		return nil, fmt.Errorf("%w: ActiveJob envelope: %v", ErrBadArgs, err)
	}
	if e.JobClass == "" {
		return nil, fmt.Errorf("%w: ActiveJob envelope has no job_class", ErrBadArgs)
	}
	return &e, nil
}

// HandlerClass is the class a handler is registered under: the wrapped job
// class for ActiveJob, else the job's class.
func (j *Job) HandlerClass() string {
	if j.IsActiveJob() {
		if w := j.StringField("wrapped"); w != "" {
			return w
		}
		if e, err := j.Envelope(); err == nil {
			return e.JobClass
		}
	}
	return j.Class
}

// Arguments are the handler's positional arguments: the job's args, or for
// ActiveJob the envelope's arguments with ActiveJob's encoding undone
// (symbol-key markers dropped, keyword hashes made plain, serialized Symbol,
// Time, Date, Duration, BigDecimal and Module values turned into JSON
// strings and numbers, a GlobalID into its gid string).
func (j *Job) Arguments() ([]json.RawMessage, error) {
	if !j.IsActiveJob() {
		return j.Args, nil
	}
	e, err := j.Envelope()
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, len(e.Arguments))
	for i, a := range e.Arguments {
		if out[i], err = DecodeActiveJobArg(a); err != nil {
			return nil, fmt.Errorf("%w: argument %d: %v", ErrBadArgs, i, err)
		}
	}
	return out, nil
}

// DecodeActiveJobArg undoes ActiveJob::Arguments serialization for one value.
func DecodeActiveJobArg(raw json.RawMessage) (json.RawMessage, error) {
	var v any
	if err := unmarshalNumber(raw, &v); err != nil {
		return nil, err
	}
	d, err := decodeAJ(v)
	if err != nil {
		return nil, err
	}
	return encodeJSON(d)
}

func unmarshalNumber(raw []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	return dec.Decode(v)
}

func decodeAJ(v any) (any, error) {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			d, err := decodeAJ(e)
			if err != nil {
				return nil, err
			}
			out[i] = d
		}
		return out, nil
	case map[string]any:
		if gid, ok := x["_aj_globalid"]; ok && len(x) == 1 {
			return gid, nil
		}
		if ser, ok := x["_aj_serialized"].(string); ok {
			return decodeSerialized(ser, x)
		}
		out := make(map[string]any, len(x))
		for k, e := range x {
			switch k {
			case "_aj_symbol_keys", "_aj_ruby2_keywords", "_aj_hash_with_indifferent_access":
				continue
			}
			d, err := decodeAJ(e)
			if err != nil {
				return nil, err
			}
			out[k] = d
		}
		return out, nil
	}
	return v, nil
}

func decodeSerialized(ser string, x map[string]any) (any, error) {
	name := ser[strings.LastIndex(ser, "::")+1:]
	name = strings.TrimPrefix(name, ":")
	switch name {
	case "SymbolSerializer", "ModuleSerializer", "DateSerializer", "BigDecimalSerializer":
		return x["value"], nil
	case "DurationSerializer":
		return x["value"], nil
	case "TimeSerializer", "TimeWithZoneSerializer", "DateTimeSerializer":
		s, _ := x["value"].(string)
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, fmt.Errorf("%s value %q: %w", ser, s, err)
		}
		return t.UTC().Format(time.RFC3339Nano), nil
	case "RangeSerializer":
		return map[string]any{"begin": x["begin"], "end": x["end"], "exclude_end": x["exclude_end"]}, nil
	}
	return nil, fmt.Errorf("unknown ActiveJob serializer %s", ser)
}

// NewActiveJob builds a job that Rails' ActiveJob runs as jobClass: a
// wrapper job whose envelope carries args encoded as ActiveJob encodes them
// (plain hashes get "_aj_symbol_keys": []). The dialect picks the wrapper
// name: Sidekiq 8's for Dialect8, Rails' built-in one for older consumers
// (Sidekiq 7.3.2 and older cannot load Sidekiq::ActiveJob::Wrapper).
func NewActiveJob(d Dialect, jobClass, queue string, args ...any) (*Job, error) {
	enc := make([]json.RawMessage, len(args))
	for i, a := range args {
		b, err := marshalArg(a)
		if err != nil {
			return nil, fmt.Errorf("%s arg %d: %w", jobClass, i, err)
		}
		var v any
		if err := unmarshalNumber(b, &v); err != nil {
			return nil, err
		}
		if enc[i], err = encodeJSON(encodeAJ(v)); err != nil {
			return nil, err
		}
	}
	var id [16]byte
	_, _ = rand.Read(id[:])
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	uuid := fmt.Sprintf("%x-%x-%x-%x-%x", id[0:4], id[4:6], id[6:8], id[8:10], id[10:])
	utc := "UTC"
	env := Envelope{
		JobClass: jobClass, JobID: uuid, QueueName: queue, Arguments: enc,
		ExceptionExecutions: map[string]int{}, Locale: "en", Timezone: &utc,
		EnqueuedAt: time.Now().UTC().Format("2006-01-02T15:04:05.000000000Z"),
	}
	raw, err := encodeJSON(env)
	if err != nil {
		return nil, err
	}
	class := ActiveJobWrapper
	if d != 0 && d < Dialect8 {
		class = ActiveJobLegacyWrapper
	}
	j := &Job{Class: class, Queue: queue, Args: []json.RawMessage{raw}}
	_ = j.SetField("wrapped", jobClass)
	return j, nil
}

func encodeAJ(v any) any {
	switch x := v.(type) {
	case []any:
		for i := range x {
			x[i] = encodeAJ(x[i])
		}
		return x
	case map[string]any:
		for k := range x {
			x[k] = encodeAJ(x[k])
		}
		x["_aj_symbol_keys"] = []any{}
		return x
	}
	return v
}
