// pagecache's patch to FerretDB v1.24.2, for the local stand-in only (scripts/provision copies
// this file into internal/handler and calls serialiseWrites after initCommands).
//
// MongoDB applies each update, findAndModify, insert and delete atomically per document: of several
// replace_one({_id, version: n}) calls, exactly one matches. FerretDB v1 runs these commands as a
// query, then a write by _id, outside one transaction (FerretDB issue #3040), so several writers
// can all "win" version n. One lock over every write command restores MongoDB's promise; reads are
// not affected, and SQLite serialises writes anyway.

package handler

import (
	"context"
	"sync"

	"github.com/FerretDB/wire"
)

var pagecacheWriteLock sync.Mutex

// serialiseWrites makes every write command run alone, from its query to its last write.
func (h *Handler) serialiseWrites() {
	for _, name := range []string{"insert", "update", "delete", "findAndModify", "findandmodify"} {
		cmd, ok := h.commands[name]
		if !ok {
			panic("pagecache patch: no FerretDB command " + name)
		}
		inner := cmd.Handler
		cmd.Handler = func(ctx context.Context, msg *wire.OpMsg) (*wire.OpMsg, error) {
			pagecacheWriteLock.Lock()
			defer pagecacheWriteLock.Unlock()
			return inner(ctx, msg)
		}
	}
}
