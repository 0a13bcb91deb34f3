package economy

import (
	"context"

	"github.com/bpagents/bpagents/internal/ledger"
	"github.com/bpagents/bpagents/internal/money"
	"github.com/bpagents/bpagents/internal/store"
)

// HumanID is the recipient name of the human operator.
const HumanID = "human"

// MessageRequest sends a message.
type MessageRequest struct {
	ToID    string `json:"to_id"`
	Content string `json:"content"`
	// FromID may name the caller; naming anyone else is refused.
	FromID string `json:"from_id,omitempty"`
}

// MessageView is a message as its sender or recipient sees it.
type MessageView struct {
	ID        string      `json:"id"`
	From      string      `json:"from"`
	To        string      `json:"to"`
	Content   string      `json:"content"`
	Timestamp string      `json:"timestamp"`
	Read      bool        `json:"read"`
	Fee       money.Micro `json:"fee,omitempty"`
}

func messageView(m store.Message) MessageView {
	return MessageView{ID: m.ID, From: m.From, To: m.To, Content: m.Content, Timestamp: rfc3339(m.Created), Read: !m.Read.IsZero()}
}

// SendMessage delivers a message to another agent or to the human operator;
// the sender pays the message fee, which is burned.
func (e *Economy) SendMessage(ctx context.Context, actor string, req MessageRequest, idem *Idem) (MessageView, error) {
	if req.FromID != "" && req.FromID != actor {
		return MessageView{}, fail(CodeForbidden, "from_id %q is not the calling agent %q", req.FromID, actor)
	}
	if req.ToID == "" {
		return MessageView{}, invalid("to_id", "is required")
	}
	if req.Content == "" {
		return MessageView{}, invalid("content", "is required")
	}
	if len(req.Content) > e.set.MaxMessageBytes {
		return MessageView{}, invalid("content", "is %d bytes, at most %d allowed", len(req.Content), e.set.MaxMessageBytes)
	}
	if !storableText(req.Content) {
		return MessageView{}, invalid("content", "must be valid UTF-8 without NUL characters")
	}
	var view MessageView
	err := e.write(ctx, func(tx store.Tx) error {
		s, err := e.stamp(ctx, tx)
		if err != nil {
			return err
		}
		view, err = idempotent(ctx, tx, idem, s.now, func() (MessageView, error) {
			if _, err := e.liveAgent(ctx, tx, actor); err != nil {
				return MessageView{}, err
			}
			if req.ToID != HumanID {
				if _, err := e.liveAgent(ctx, tx, req.ToID); err != nil {
					return MessageView{}, err
				}
			}
			m := store.Message{ID: newID("msg"), From: actor, To: req.ToID, Content: req.Content, Created: s.now, Cycle: s.cycle}
			if e.set.MessageFee > 0 {
				if _, err := post(ctx, tx, s, ledger.Posting{Kind: ledger.KindMessageFee, From: actor,
					To: ledger.BurnAccount, Amount: e.set.MessageFee, Ref: m.ID, AgentID: actor}); err != nil {
					return MessageView{}, fundsError(err)
				}
			}
			if err := tx.InsertMessage(ctx, &m); err != nil {
				return MessageView{}, err
			}
			if err := emit(ctx, tx, s, "message.sent", actor, m.ID, map[string]any{"message_id": m.ID,
				"from": actor, "to": req.ToID, "bytes": len(req.Content), "fee": e.set.MessageFee}); err != nil {
				return MessageView{}, err
			}
			v := messageView(m)
			v.Fee = e.set.MessageFee
			return v, nil
		})
		return err
	})
	return view, err
}

// Inbox lists messages to agentID, unread first, and marks the listed ones read.
func (e *Economy) Inbox(ctx context.Context, agentID string, limit int) ([]MessageView, error) {
	if limit <= 0 || limit > 500 {
		limit = 100
	}
	var out []MessageView
	err := e.write(ctx, func(tx store.Tx) error {
		msgs, err := tx.Inbox(ctx, agentID, limit)
		if err != nil {
			return err
		}
		var unread []string
		out = make([]MessageView, 0, len(msgs))
		for _, m := range msgs {
			out = append(out, messageView(m))
			if m.Read.IsZero() {
				unread = append(unread, m.ID)
			}
		}
		return e.markRead(ctx, tx, agentID, unread)
	})
	return out, err
}

// markRead records that messages were delivered to their recipient.
func (e *Economy) markRead(ctx context.Context, tx store.Tx, agentID string, msgIDs []string) error {
	if len(msgIDs) == 0 {
		return nil
	}
	s, err := e.stamp(ctx, tx)
	if err != nil {
		return err
	}
	if err := tx.MarkRead(ctx, msgIDs, s.now); err != nil {
		return err
	}
	return emit(ctx, tx, s, "message.read", agentID, "", map[string]any{"message_ids": msgIDs})
}
