package trigger

import (
	"slices"
	"strings"
	"time"

	// Zone data in the binary: a master on a host without /usr/share/zoneinfo
	// (a scratch container) must read schedules the same way.
	_ "time/tzdata"

	"github.com/robfig/cron/v3"
)

// Limits of a schedule.
const (
	maxExprs    = 20
	minInterval = time.Minute
)

// accepted ends every error about an expression: what a schedule may be.
const accepted = "use five fields (minute hour day-of-month month day-of-week), " +
	"@hourly, @daily, @weekly, @monthly, @yearly or @every 10m"

// neverBefore is where ParseSchedule looks for an expression's first slot
// to refuse one that never comes ("0 0 30 2 *"). Any fixed time does: the
// library looks five years ahead, which holds a leap day.
var neverBefore = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Schedule is a pipeline's cron expressions read in one time zone.
type Schedule struct {
	zone  string
	loc   *time.Location
	exprs []string
	specs []cron.Schedule // specs[i] is exprs[i] parsed
}

// ParseSchedule reads exprs, each five cron fields or a descriptor
// (@hourly, @daily, @weekly, @monthly, @yearly and their aliases, @every
// 10m), in the IANA time zone zone; "" is UTC. Five-field expressions are
// wall-clock times in that zone, with the library's choices on a DST
// change: a slot in the skipped hour does not come that day, and a slot
// in the repeated hour comes twice. @every counts from the time given to
// Next, not from the clock.
//
// No expressions make a schedule that is never due.
func ParseSchedule(exprs []string, zone string) (*Schedule, error) {
	loc, err := location(zone)
	if err != nil {
		return nil, err
	}
	if len(exprs) > maxExprs {
		return nil, errorf(ErrBadSchedule, "a pipeline has at most %d schedules and %d "+
			"are given: combine them with lists such as \"0 3,15 * * 1-5\"", maxExprs,
			len(exprs))
	}

	s := &Schedule{zone: zone, loc: loc}
	for _, e := range exprs {
		e = strings.Join(strings.Fields(e), " ")
		spec, err := parseExpr(e, loc)
		if err != nil {
			return nil, err
		}
		if slices.Contains(s.exprs, e) {
			return nil, errorf(ErrBadSchedule, "schedule %q is given twice: drop one", e)
		}
		s.exprs = append(s.exprs, e)
		s.specs = append(s.specs, spec)
	}
	return s, nil
}

func location(zone string) (*time.Location, error) {
	if zone == "" {
		return time.UTC, nil
	}
	// "Local" is whatever zone the master's host has; a schedule must not
	// move when the master does.
	loc, err := time.LoadLocation(zone)
	if err != nil || zone == "Local" {
		return nil, errorf(ErrBadSchedule, "time zone %q is not known: use an IANA name "+
			"such as Europe/Berlin", zone)
	}
	return loc, nil
}

// parseExpr parses one expression with the whitespace already collapsed.
func parseExpr(e string, loc *time.Location) (cron.Schedule, error) {
	switch {
	case e == "":
		return nil, errorf(ErrBadSchedule, "schedule \"\" is empty: %s", accepted)
	case strings.HasPrefix(e, "TZ=") || strings.HasPrefix(e, "CRON_TZ="):
		// The library would read the zone itself, and panics on a prefix
		// without a space after it.
		return nil, errorf(ErrBadSchedule, "schedule %q sets a time zone of its own: "+
			"give the pipeline's time zone apart and %s", e, accepted)
	case e == "@reboot":
		return nil, errorf(ErrBadSchedule, "schedule \"@reboot\" is not accepted, as "+
			"pipelines do not run when the master starts: %s", accepted)
	}

	spec, err := cron.ParseStandard(e)
	if err != nil {
		return nil, errorf(ErrBadSchedule, "schedule %q is not valid (%v): %s", e, err,
			accepted)
	}
	if every, ok := spec.(cron.ConstantDelaySchedule); ok && every.Delay < minInterval {
		return nil, errorf(ErrBadSchedule, "schedule %q runs more often than once a "+
			"minute: use @every 1m or longer", e)
	}
	if spec.Next(neverBefore.In(loc)).IsZero() {
		return nil, errorf(ErrBadSchedule, "schedule %q names a day that never comes: "+
			"check the day of the month against the month", e)
	}
	return spec, nil
}

// Exprs returns the expressions as given, with runs of spaces collapsed.
func (s *Schedule) Exprs() []string { return slices.Clone(s.exprs) }

// Zone returns the time zone as given; "" is UTC.
func (s *Schedule) Zone() string { return s.zone }

// Next returns the first slot strictly after t, in the schedule's zone,
// and the expression that gives it; of two expressions that give the same
// slot, the one given first. It returns the zero time and "" when no
// expression has a slot within five years of t.
func (s *Schedule) Next(t time.Time) (time.Time, string) {
	var slot time.Time
	var expr string
	t = t.In(s.loc)
	for i, spec := range s.specs {
		n := spec.Next(t)
		if !n.IsZero() && (slot.IsZero() || n.Before(slot)) {
			slot, expr = n, s.exprs[i]
		}
	}
	return slot, expr
}

// Due says whether a slot fell in (after, now]: the first such slot and
// its expression. Several missed slots give one answer: the caller
// records now as its new after, so a master that was down runs a
// schedule once at start, not once per missed slot. A now before after
// (the clock went back) is never due.
func (s *Schedule) Due(after, now time.Time) (slot time.Time, expr string, ok bool) {
	slot, expr = s.Next(after)
	if slot.IsZero() || slot.After(now) {
		return time.Time{}, "", false
	}
	return slot, expr, true
}
