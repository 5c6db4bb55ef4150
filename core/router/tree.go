package router

import (
	"bytes"
	"cmp"
	"slices"
)

type segKind uint8

const (
	segLiteral segKind = iota
	segParam
	segCatchAll
)

// segment is one "/"-separated piece of a parameterised path pattern; text is the literal or
// the parameter name.
type segment struct {
	kind segKind
	text string
}

// pnode is a node of the segment trie of parameterised paths. Each trie node sits at a fixed
// depth, so a walk visits every node at most once even though it explores both the literal and
// the parameter child: the cost is bounded by the trie, never exponential.
type pnode struct {
	lits     int // literal segments on the way from the root (specificity rule 3)
	children map[string]*pnode
	param    *pnode
	end      []int32 // routes whose pattern ends here
	catchAll []int32 // routes whose final {name...} starts here
}

func (n *pnode) insert(segs []segment, id int32) {
	for _, s := range segs {
		switch s.kind {
		case segCatchAll:
			n.catchAll = append(n.catchAll, id)
			return
		case segParam:
			if n.param == nil {
				n.param = &pnode{lits: n.lits}
			}
			n = n.param
		default:
			c := n.children[s.text]
			if c == nil {
				if n.children == nil {
					n.children = map[string]*pnode{}
				}
				c = &pnode{lits: n.lits + 1}
				n.children[s.text] = c
			}
			n = c
		}
	}
	n.end = append(n.end, id)
}

// candidate is the best parameterised route found so far during a trie walk.
type candidate struct {
	id       int32
	lits     int
	catchAll bool
	weight   int
}

// beats reports whether c is more specific than b under rules 3, 4 and 5.
func (c *candidate) beats(b *candidate) bool {
	if b.id < 0 {
		return true
	}
	if c.lits != b.lits {
		return c.lits > b.lits
	}
	if c.catchAll != b.catchAll {
		return !c.catchAll
	}
	if c.weight != b.weight {
		return c.weight > b.weight
	}
	return c.id < b.id
}

func (t *Table) offer(ids []int32, lits int, catchAll bool, req *request, best *candidate) {
	id := t.first(ids, req)
	if id < 0 {
		return
	}
	c := candidate{id: int32(id), lits: lits, catchAll: catchAll, weight: t.routes[id].weight}
	if c.beats(best) {
		*best = c
	}
}

// walkParams explores every trie path that matches rest (the request path after the slash that
// precedes the next segment; done means no segment is left) and records the best route.
func (t *Table) walkParams(n *pnode, rest []byte, done bool, req *request, best *candidate) {
	if done {
		if len(n.end) > 0 {
			t.offer(n.end, n.lits, false, req, best)
		}
		return
	}
	if len(n.catchAll) > 0 {
		t.offer(n.catchAll, n.lits, true, req, best)
	}
	seg, next, nextDone := rest, []byte(nil), true
	if i := bytes.IndexByte(rest, '/'); i >= 0 {
		seg, next, nextDone = rest[:i], rest[i+1:], false
	}
	if n.children != nil {
		if c := n.children[string(seg)]; c != nil {
			t.walkParams(c, next, nextDone, req, best)
		}
	}
	if n.param != nil && len(seg) > 0 {
		t.walkParams(n.param, next, nextDone, req, best)
	}
}

// rnode is a node of the byte-wise radix tree of path prefixes.
type rnode struct {
	label    string   // bytes consumed on the edge into this node
	first    []byte   // first byte of each child's label, parallel to children
	children []*rnode // at most one per first byte
	routes   []int32  // routes whose prefix ends exactly here
}

func (n *rnode) child(b byte) int {
	return bytes.IndexByte(n.first, b)
}

func (n *rnode) insert(s string, id int32) {
	for {
		if s == "" {
			n.routes = append(n.routes, id)
			return
		}
		ci := n.child(s[0])
		if ci < 0 {
			n.first = append(n.first, s[0])
			n.children = append(n.children, &rnode{label: s, routes: []int32{id}})
			return
		}
		c := n.children[ci]
		l := 0
		for l < len(c.label) && l < len(s) && c.label[l] == s[l] {
			l++
		}
		if l < len(c.label) {
			// Split the edge so that the shared part becomes a node of its own.
			mid := &rnode{label: c.label[:l], first: []byte{c.label[l]}, children: []*rnode{c}}
			c.label = c.label[l:]
			n.children[ci] = mid
			c = mid
		}
		n, s = c, s[l:]
	}
}

// matchPrefix returns the route of the longest matching prefix whose constraints hold: deeper
// nodes are tried first, on the way back up the recursion.
func (t *Table) matchPrefix(n *rnode, path []byte, req *request) int {
	if len(path) > 0 {
		if ci := n.child(path[0]); ci >= 0 {
			c := n.children[ci]
			if len(path) >= len(c.label) && string(path[:len(c.label)]) == c.label {
				if id := t.matchPrefix(c, path[len(c.label):], req); id >= 0 {
					return id
				}
			}
		}
	}
	return t.first(n.routes, req)
}

// sortIDs orders a route list by rules 4 and 5: more constraints first, then config order.
func (t *Table) sortIDs(ids []int32) {
	slices.SortFunc(ids, func(a, b int32) int {
		if wa, wb := t.routes[a].weight, t.routes[b].weight; wa != wb {
			return cmp.Compare(wb, wa)
		}
		return cmp.Compare(a, b)
	})
}

func (t *Table) sortPNode(n *pnode) {
	t.sortIDs(n.end)
	t.sortIDs(n.catchAll)
	for _, c := range n.children {
		t.sortPNode(c)
	}
	if n.param != nil {
		t.sortPNode(n.param)
	}
}

func (t *Table) sortRNode(n *rnode) {
	t.sortIDs(n.routes)
	for _, c := range n.children {
		t.sortRNode(c)
	}
}
