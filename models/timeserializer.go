package models

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"gorm.io/gorm/schema"
)

// timeSerializerName tags every time column of our models.
const timeSerializerName = "pallarel_time"

// The pure-Go SQLite driver turns TEXT into time.Time only for columns
// declared exactly DATE, DATETIME or TIMESTAMP; Rails declares datetime(6),
// so those values arrive as strings. This serializer accepts both.
func init() {
	schema.RegisterSerializer(timeSerializerName, timeSerializer{})
}

// timeSerializer reads time.Time and *time.Time fields from time.Time,
// string or []byte column values and writes them in UTC.
type timeSerializer struct{}

// sqliteTimeFormats are the layouts SQLite files hold: ours (the driver's
// "sqlite" format) and Rails' ("2025-01-02 03:04:05.123456", UTC).
var sqliteTimeFormats = []string{
	"2006-01-02 15:04:05.999999999-07:00",
	"2006-01-02T15:04:05.999999999-07:00",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02T15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999 -0700 MST",
	"2006-01-02 15:04",
	"2006-01-02",
}

func parseDBTime(s string) (time.Time, error) {
	for _, layout := range sqliteTimeFormats {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("parse time %q: unknown format", s)
}

// Scan implements schema.SerializerInterface.
func (timeSerializer) Scan(ctx context.Context, field *schema.Field, dst reflect.Value, dbValue any) error {
	var t time.Time
	switch v := dbValue.(type) {
	case nil:
		return field.Set(ctx, dst, nil)
	case time.Time:
		t = v.UTC()
	case string:
		p, err := parseDBTime(v)
		if err != nil {
			return fmt.Errorf("column %s: %w", field.DBName, err)
		}
		t = p
	case []byte:
		p, err := parseDBTime(string(v))
		if err != nil {
			return fmt.Errorf("column %s: %w", field.DBName, err)
		}
		t = p
	default:
		return fmt.Errorf("column %s: cannot read %T as time", field.DBName, dbValue)
	}
	if field.FieldType.Kind() == reflect.Pointer {
		return field.Set(ctx, dst, &t)
	}
	return field.Set(ctx, dst, t)
}

// Value implements schema.SerializerInterface.
func (timeSerializer) Value(ctx context.Context, field *schema.Field, dst reflect.Value, fieldValue any) (any, error) {
	switch v := fieldValue.(type) {
	case time.Time:
		return v.UTC(), nil
	case *time.Time:
		if v == nil {
			return nil, nil
		}
		return v.UTC(), nil
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("column %s: cannot write %T as time", field.DBName, fieldValue)
}
