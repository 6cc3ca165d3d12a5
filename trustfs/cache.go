package trustfs

import (
	"container/list"
	"sync"
)

// chunkKey names a chunk of a trusted file.
type chunkKey struct {
	file  *trusted
	index int64
}

// chunkCache keeps the chunks verified last, up to a number of them. A chunk it holds is never
// changed: readers copy from it.
type chunkCache struct {
	max int

	mu    sync.Mutex // guards the fields below
	order *list.List // of *cachedChunk, the one used last first
	index map[chunkKey]*list.Element
}

type cachedChunk struct {
	key chunkKey
	b   []byte
}

func newChunkCache(max int) *chunkCache {
	return &chunkCache{max: max, order: list.New(), index: map[chunkKey]*list.Element{}}
}

// get returns the chunk key, or nil if the cache does not hold it.
func (c *chunkCache) get(key chunkKey) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.index[key]
	if !ok {
		return nil
	}
	c.order.MoveToFront(e)
	return e.Value.(*cachedChunk).b
}

// put adds the verified chunk key, b, dropping the one used least lately if the cache is full.
func (c *chunkCache) put(key chunkKey, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.index[key]; ok { // verified by another reader meanwhile
		c.order.MoveToFront(e)
		return
	}
	c.index[key] = c.order.PushFront(&cachedChunk{key, b})
	if c.order.Len() > c.max {
		old := c.order.Remove(c.order.Back()).(*cachedChunk)
		delete(c.index, old.key)
	}
}
