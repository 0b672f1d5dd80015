package models

import (
	"time"

	"gorm.io/gorm"
)

// Store runs the queries the jobs and the web side need.
type Store struct {
	DB *gorm.DB
	// Now is the clock; defaults to time.Now.
	Now func() time.Time
}

// NewStore returns a Store on db with the real clock.
func NewStore(db *gorm.DB) *Store {
	return &Store{DB: db, Now: time.Now}
}

// now returns the current time in UTC at the microsecond precision of
// Rails' datetime(6) columns, so what we write is what we read back.
func (s *Store) now() time.Time {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	return now().UTC().Truncate(time.Microsecond)
}
