package server

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/kilnci/kiln/proto/kilnpb"
	"github.com/kilnci/kiln/registry"
	"github.com/kilnci/kiln/trigger"
)

// maxHookBody is the largest delivery taken; GitHub caps its payloads at
// 25 MB.
const maxHookBody = 25 << 20

// hookReaders bounds the deliveries read at once, and so the memory that
// bodies sent by anyone who reaches the port can take.
const hookReaders = 4

// hookReadTimeout bounds the reading of one delivery's body, and
// hookSlotWait the wait for a slot to read it in: a forge gives up after
// ten seconds, so a delivery is better refused early, to be redelivered.
const (
	hookReadTimeout = 10 * time.Second
	hookSlotWait    = 2 * time.Second
)

// serveHook takes a webhook delivery for the pipeline in the path. It
// answers as soon as the delivery is checked and, for a push to the
// followed ref, queued: the build and the run come after the answer, so a
// forge that waits ten seconds at most never times out on a compile.
// Every answer's body is one line that says what was done or why not.
func (s *Server) serveHook(w http.ResponseWriter, r *http.Request) {
	code, msg := s.hook(w, r)
	s.metrics.hooks.WithLabelValues(strconv.Itoa(code)).Inc()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

func (s *Server) hook(w http.ResponseWriter, r *http.Request) (int, string) {
	name := r.PathValue("name")
	p, err := s.reg.Get(name)
	if errors.Is(err, registry.ErrNotFound) {
		return http.StatusNotFound, fmt.Sprintf("no pipeline %q: point the webhook at "+
			"/hooks/NAME with a name from ci pipeline list", name)
	}
	if err != nil {
		return http.StatusInternalServerError, fmt.Sprintf("read pipeline %q: %v", name, err)
	}
	if p.WebhookSecret == "" {
		return http.StatusNotFound, fmt.Sprintf("pipeline %q has no webhook: set one with "+
			"ci pipeline update %s --webhook-secret-file FILE", name, name)
	}

	wait := time.NewTimer(hookSlotWait)
	defer wait.Stop()
	select {
	case s.hookSlots <- struct{}{}:
		defer func() { <-s.hookSlots }()
	case <-wait.C:
		w.Header().Set("Retry-After", "5")
		return http.StatusServiceUnavailable, "the master is busy reading other deliveries: " +
			"redeliver in a few seconds"
	case <-r.Context().Done():
		return http.StatusServiceUnavailable, "the request ended before it was read"
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(hookReadTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxHookBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return http.StatusRequestEntityTooLarge,
				fmt.Sprintf("the delivery is larger than %d MB", maxHookBody>>20)
		}
		return http.StatusBadRequest, fmt.Sprintf("read the delivery: %v", err)
	}

	d, err := trigger.Read(r.Header, body, p.WebhookSecret)
	if err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, trigger.ErrUnsigned) || errors.Is(err, trigger.ErrBadSignature) {
			code = http.StatusUnauthorized
		}
		s.refused(name, err)
		return code, err.Error()
	}
	return s.takeDelivery(p, d, body)
}

// refused remembers why the pipeline's last delivery was refused, where
// `ci pipeline show` shows it: a forge whose secret does not match would
// otherwise leave no trace. It keeps one reason, not a list, so that
// requests from anyone cannot push real events out.
func (s *Server) refused(name string, err error) {
	// Written when the reason changes or a minute passed, so that a flood
	// of bad requests is not a flood of writes and log lines.
	st, serr := s.store.TriggerState(name)
	now := s.now()
	if serr != nil || (st.Refused == err.Error() && now.Sub(fromMS(st.RefusedAt)) < time.Minute) {
		return
	}
	s.log.Warn("webhook delivery refused", "pipeline", name, "err", err)
	s.trig.setState(name, func(st *kilnpb.TriggerState) {
		st.Refused, st.RefusedAt = err.Error(), ms(now)
	})
}

// takeDelivery decides what an authenticated delivery does: it queues a
// push to the followed ref, and says why for anything else.
func (s *Server) takeDelivery(p *kilnpb.Pipeline, d *trigger.Delivery,
	body []byte) (int, string) {
	tr := &kilnpb.Trigger{Kind: triggerWebhook, Delivery: d.ID,
		Detail: fmt.Sprintf("%s %s", d.Forge, d.Event)}
	ignore := func(format string, args ...any) (int, string) {
		msg := "ignored: " + fmt.Sprintf(format, args...)
		s.trig.event(p.Name, &kilnpb.TriggerEvent{At: ms(s.now()), Trigger: tr,
			Outcome: outcomeIgnored, Message: msg})
		return http.StatusOK, msg
	}
	switch {
	case d.Ping:
		return ignore("%s ping: the webhook of pipeline %s works", d.Forge, p.Name)
	case d.Push == nil:
		return ignore("%s %q events start nothing; only pushes do", d.Forge, d.Event)
	}
	push := d.Push
	tr.By, tr.Ref, tr.Commit = push.Pusher, push.Ref, push.After
	tr.Detail = fmt.Sprintf("%s push to %s", d.Forge, push.Ref)
	if push.Deleted {
		return ignore("%s was deleted", push.Ref)
	}
	if ok, why := trigger.Follows(p.Ref, push.Ref); !ok {
		return ignore("push to %s: %s", push.Ref, why)
	}

	tr.Detail = fmt.Sprintf("%s push of %s to %s", d.Forge, registry.Short(push.After), push.Ref)
	// The body's hash is a key too: no forge signs the delivery ID, so a
	// signed body replayed under a new ID is still the same push.
	sum := sha256.Sum256(body)
	item := &kilnpb.QueuedTrigger{Pipeline: p.Name, At: ms(s.now()), Trigger: tr,
		Keys: []string{d.ID, "sha256:" + hex.EncodeToString(sum[:])}}
	dup, err := s.store.Enqueue(item, nil)
	if err != nil {
		return http.StatusInternalServerError, err.Error()
	}
	if dup {
		return ignore("this push was taken before (delivery %s, or the same signed body "+
			"under another ID); a redelivery starts nothing", d.ID)
	}
	s.log.Info("webhook queued a run", "pipeline", p.Name, "delivery", d.ID,
		"ref", push.Ref, "commit", push.After)
	s.trig.poke()
	return http.StatusAccepted, fmt.Sprintf("accepted: building commit %s of %s, then a run "+
		"starts; see ci pipeline show %s", registry.Short(push.After), push.Ref, p.Name)
}
