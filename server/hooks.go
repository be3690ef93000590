package server

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/kilnci/kiln/proto/kilnpb"
	"github.com/kilnci/kiln/registry"
	"github.com/kilnci/kiln/trigger"
)

// maxHookBody is the largest delivery taken; GitHub caps its payloads at
// 25 MB.
const maxHookBody = 25 << 20

// serveHook takes a webhook delivery for the pipeline in the path. It
// answers as soon as the delivery is checked and, for a push to the
// followed ref, queued: the build and the run come after the answer, so a
// forge that waits ten seconds at most never times out on a compile.
// Every answer's body is one line that says what was done or why not.
func (s *Server) serveHook(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxHookBody))
	if err != nil {
		hookAnswer(w, http.StatusRequestEntityTooLarge,
			"the delivery is larger than %d MB", maxHookBody>>20)
		return
	}
	p, err := s.reg.Get(name)
	if errors.Is(err, registry.ErrNotFound) {
		hookAnswer(w, http.StatusNotFound, "no pipeline %q", name)
		return
	}
	if err != nil {
		hookAnswer(w, http.StatusInternalServerError, "read pipeline %q: %v", name, err)
		return
	}
	if p.WebhookSecret == "" {
		hookAnswer(w, http.StatusNotFound, "pipeline %q has no webhook: set one with "+
			"ci pipeline update %s --webhook-secret-file FILE", name, name)
		return
	}
	d, err := trigger.Read(r.Header, body, p.WebhookSecret)
	if err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, trigger.ErrUnsigned) || errors.Is(err, trigger.ErrBadSignature) {
			code = http.StatusUnauthorized
		}
		s.metrics.hooks.WithLabelValues(strconv.Itoa(code)).Inc()
		hookAnswer(w, code, "%v", err)
		return
	}
	code, msg := s.takeDelivery(p, d, body)
	s.metrics.hooks.WithLabelValues(strconv.Itoa(code)).Inc()
	hookAnswer(w, code, "%s", msg)
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

	tr.Detail = fmt.Sprintf("%s push of %s to %s", d.Forge, short(push.After), push.Ref)
	item := &kilnpb.QueuedTrigger{Pipeline: p.Name, At: ms(s.now()), Trigger: tr}
	// The body's hash is a key too: no forge signs the delivery ID, so a
	// signed body replayed under a new ID is still the same push.
	sum := sha256.Sum256(body)
	dup, err := s.store.Enqueue(item, []string{d.ID, "sha256:" + hex.EncodeToString(sum[:])}, nil)
	if err != nil {
		return http.StatusInternalServerError, err.Error()
	}
	if dup {
		return ignore("delivery %s was taken before; a redelivery starts nothing", d.ID)
	}
	s.log.Info("webhook queued a run", "pipeline", p.Name, "delivery", d.ID,
		"ref", push.Ref, "commit", push.After)
	s.trig.poke()
	return http.StatusAccepted, fmt.Sprintf("accepted: building commit %s of %s, then a run "+
		"starts; see ci pipeline show %s", short(push.After), push.Ref, p.Name)
}

func hookAnswer(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintf(w, format+"\n", args...)
}
