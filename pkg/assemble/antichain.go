package assemble

// maxWeightAntichain returns the largest total weight of a set of nodes of a DAG no two
// of which are ordered (neither reaches the other), and one such set, in increasing
// order. edges[i] = {u, v} means u comes before v; only the DAG's own edges are needed,
// not its transitive closure. Weights must be >= 0.
//
// Why this is the pod's peak: a set of tasks can all be running at one moment iff it is
// an antichain of the schedule (run everything before them, then start them together),
// and the tasks running at any moment always are one.
//
// Method: the weighted form of Dilworth's theorem as a minimum flow. Every node v becomes
// an edge in(v)->out(v) that must carry at least w(v); every DAG edge u->v becomes
// out(u)->in(v); a source feeds every in(v) and every out(v) drains to a sink; no edge
// has an upper bound. A flow is a set of chains covering each node w(v) times, so the
// minimum flow is the least weighted chain cover, which equals the maximum weight
// antichain; and the nodes whose in-edge a minimum cut crosses forwards are that
// antichain (a cut without backward unbounded edges cannot separate two ordered nodes).
// The minimum flow is found by starting from a feasible flow (each node on its own
// s->in->out->t path) and pushing back as much as possible from the sink to the source
// (Dinic's algorithm on the residual network).
//
// Complexity: the network has V = 2n+2 vertices and E = 3n+m edges for n nodes and m
// DAG edges; Dinic's algorithm takes O(V^2 E) whatever the weights, so O(n^2 (n+m)) per
// resource. Pipelines have at most a few hundred tasks (the pod's size bounds them),
// which this handles in milliseconds.
func maxWeightAntichain(n int, edges [][2]int, w []int64) (int64, []int) {
	var total int64
	for _, x := range w {
		total += x
	}
	if total == 0 {
		return 0, nil
	}
	// No flow ever exceeds total (the feasible start), so total+1 stands for "unbounded".
	inf := total + 1
	const s, t = 0, 1
	in := func(v int) int { return 2 + 2*v }
	out := func(v int) int { return 3 + 2*v }
	g := newFlowGraph(2*n + 2)
	// An edge with lower bound l carrying f has residual inf-f forwards and f-l backwards.
	add := func(a, b int, l, f int64) { g.addEdge(a, b, inf-f, f-l) }
	for v := range n {
		add(s, in(v), 0, w[v])
		add(in(v), out(v), w[v], w[v])
		add(out(v), t, 0, w[v])
	}
	for _, e := range edges {
		add(out(e[0]), in(e[1]), 0, 0)
	}
	back := g.maxFlow(t, s)
	reach := g.reachable(t)
	var set []int
	var sum int64
	for v := range n {
		if !reach[in(v)] && reach[out(v)] {
			set = append(set, v)
			sum += w[v]
		}
	}
	if sum != total-back {
		// The cut and the flow always agree (max-flow min-cut); a mismatch is a bug here.
		panic("maxWeightAntichain: cut and flow disagree")
	}
	return sum, set
}

// flowGraph is a residual network for Dinic's maximum flow algorithm.
type flowGraph struct {
	adj   [][]int // edge indices leaving each vertex
	to    []int
	cap   []int64 // residual capacity; edge i^1 is the reverse of edge i
	level []int
	next  []int
}

func newFlowGraph(n int) *flowGraph {
	return &flowGraph{adj: make([][]int, n), level: make([]int, n), next: make([]int, n)}
}

func (g *flowGraph) addEdge(a, b int, forward, backward int64) {
	g.adj[a] = append(g.adj[a], len(g.to))
	g.to, g.cap = append(g.to, b), append(g.cap, forward)
	g.adj[b] = append(g.adj[b], len(g.to))
	g.to, g.cap = append(g.to, a), append(g.cap, backward)
}

func (g *flowGraph) maxFlow(s, t int) int64 {
	var flow int64
	for g.bfs(s, t) {
		for i := range g.next {
			g.next[i] = 0
		}
		for {
			f := g.dfs(s, t, -1)
			if f == 0 {
				break
			}
			flow += f
		}
	}
	return flow
}

func (g *flowGraph) bfs(s, t int) bool {
	for i := range g.level {
		g.level[i] = -1
	}
	g.level[s] = 0
	queue := []int{s}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, e := range g.adj[v] {
			if g.cap[e] > 0 && g.level[g.to[e]] < 0 {
				g.level[g.to[e]] = g.level[v] + 1
				queue = append(queue, g.to[e])
			}
		}
	}
	return g.level[t] >= 0
}

// dfs pushes one blocking-flow path of at most limit (-1: unbounded) from v to t.
func (g *flowGraph) dfs(v, t int, limit int64) int64 {
	if v == t {
		return limit
	}
	for ; g.next[v] < len(g.adj[v]); g.next[v]++ {
		e := g.adj[v][g.next[v]]
		u := g.to[e]
		if g.cap[e] <= 0 || g.level[u] != g.level[v]+1 {
			continue
		}
		l := g.cap[e]
		if limit >= 0 && limit < l {
			l = limit
		}
		if f := g.dfs(u, t, l); f > 0 {
			g.cap[e] -= f
			g.cap[e^1] += f
			return f
		}
	}
	return 0
}

func (g *flowGraph) reachable(s int) []bool {
	seen := make([]bool, len(g.adj))
	seen[s] = true
	stack := []int{s}
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, e := range g.adj[v] {
			if g.cap[e] > 0 && !seen[g.to[e]] {
				seen[g.to[e]] = true
				stack = append(stack, g.to[e])
			}
		}
	}
	return seen
}
