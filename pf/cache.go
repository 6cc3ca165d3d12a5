package pf

import "container/list"

// cacheNodes is how many decrypted nodes a File keeps (4 KiB each); tests lower it. When all of them are dirty
// the file is flushed, so memory stays bounded whatever the file size.
var cacheNodes = 256

// nodeID names a data or MHT node by its number among the nodes of its kind.
type nodeID struct {
	mht bool
	n   int64
}

// node is a decrypted node; buf has room for the GCM tag after the 4096 bytes of plaintext.
type node struct {
	id    nodeID
	buf   [NodeSize + MACSize]byte
	dirty bool
	elem  *list.Element
}

// nodeCache is a least-recently-used cache of decrypted nodes.
type nodeCache struct {
	byID map[nodeID]*node
	lru  list.List // front: most recently used
}

func (c *nodeCache) get(id nodeID) *node {
	n := c.byID[id]
	if n != nil {
		c.lru.MoveToFront(n.elem)
	}
	return n
}

func (c *nodeCache) put(n *node) {
	if c.byID == nil {
		c.byID = make(map[nodeID]*node)
	}
	n.elem = c.lru.PushFront(n)
	c.byID[n.id] = n
}

func (c *nodeCache) remove(n *node) {
	c.lru.Remove(n.elem)
	delete(c.byID, n.id)
	clear(n.buf[:])
}

// evictClean drops clean nodes, least recently used first, until at most max remain.
func (c *nodeCache) evictClean(max int) {
	for e := c.lru.Back(); e != nil && c.lru.Len() > max; {
		prev := e.Prev()
		if n := e.Value.(*node); !n.dirty {
			c.remove(n)
		}
		e = prev
	}
}

func (c *nodeCache) len() int { return c.lru.Len() }

// all returns every cached node that matches keep.
func (c *nodeCache) all(keep func(*node) bool) []*node {
	var out []*node
	for _, n := range c.byID {
		if keep(n) {
			out = append(out, n)
		}
	}
	return out
}
