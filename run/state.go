package run

import "github.com/pallarel/pallarel/models"

// State is where a run is. A run starts Splitting, is Processing once its
// rows are pushed, and ends once, in Completed, Failed or Cancelled,
// through the one End transition (jobs' Pipeline.End); "Retry failed
// rows" reopens a Completed run, which ends again the same way. The
// values are the database's (models.Run*).
type State string

// A run's states.
const (
	Splitting  State = models.RunSplitting
	Processing State = models.RunProcessing
	Completed  State = models.RunCompleted
	Failed     State = models.RunFailed
	Cancelled  State = models.RunCancelled
)

// Ended says whether s is an end.
func (s State) Ended() bool { return s == Completed || s == Failed || s == Cancelled }

// Ending is how a run ends.
type Ending struct {
	State  State  // Completed, Failed or Cancelled
	Reason string // why it failed or was cancelled; empty for Completed
	// Worker is why the token's worker is stopped (the launcher's reason);
	// empty: "report <token> <state>".
	Worker string
}
