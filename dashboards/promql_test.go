package dashboards

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// A small PromQL parser, enough to tell how many series a dashboard query
// returns: whether that number is bounded (topk, an aggregation that folds
// every per-node label, a vector(0)...) or grows with the fleet. promtool
// checks the syntax; this only needs the shape of the expression.

type pqNode interface{ String() string }

type (
	pqNumber   struct{ text string }
	pqString   struct{ value string }
	pqSelector struct{ sel selector }
	pqParen    struct{ expr pqNode }
	pqUnary    struct {
		op   string
		expr pqNode
	}
	// pqRange is a range selector, a subquery, or an offset/@ modifier:
	// all return the series of expr.
	pqRange struct {
		expr pqNode
		mod  string
	}
	pqCall struct {
		fn   string
		args []pqNode
	}
	pqAggregate struct {
		op       string
		grouping string // "", "by" or "without"
		labels   []string
		param    pqNode // k of topk, q of quantile, label of count_values
		expr     pqNode
	}
	pqBinary struct {
		op         string
		lhs, rhs   pqNode
		matching   string // "", "on" or "ignoring"
		group      string // "", "group_left" or "group_right"
		returnBool bool
	}
)

func (n pqNumber) String() string   { return n.text }
func (n pqString) String() string   { return fmt.Sprintf("%q", n.value) }
func (n pqSelector) String() string { return n.sel.metric + "{…}" }
func (n pqParen) String() string    { return "(" + n.expr.String() + ")" }
func (n pqUnary) String() string    { return n.op + n.expr.String() }
func (n pqRange) String() string    { return n.expr.String() + n.mod }
func (n pqCall) String() string {
	var args []string
	for _, a := range n.args {
		args = append(args, a.String())
	}
	return n.fn + "(" + strings.Join(args, ", ") + ")"
}

func (n pqAggregate) String() string {
	s := n.op
	if n.grouping != "" {
		s += " " + n.grouping + " (" + strings.Join(n.labels, ", ") + ")"
	}
	s += " ("
	if n.param != nil {
		s += n.param.String() + ", "
	}
	return s + n.expr.String() + ")"
}

func (n pqBinary) String() string {
	op := n.op
	if n.returnBool {
		op += " bool"
	}
	if n.matching != "" {
		op += " " + n.matching + "(…)"
	}
	if n.group != "" {
		op += " " + n.group
	}
	return "(" + n.lhs.String() + " " + op + " " + n.rhs.String() + ")"
}

var (
	pqAggregations = map[string]bool{
		"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true,
		"stdvar": true, "count": true, "count_values": true, "bottomk": true, "topk": true,
		"quantile": true, "limitk": true, "limit_ratio": true,
	}
	pqParamAggregations = map[string]bool{
		"count_values": true, "bottomk": true, "topk": true, "quantile": true, "limitk": true, "limit_ratio": true,
	}
	// Binary operators by precedence, lowest first; ^ is right-associative.
	pqPrecedence = [][]string{
		{"or"},
		{"and", "unless"},
		{"==", "!=", "<=", ">=", "<", ">"},
		{"+", "-"},
		{"*", "/", "%", "atan2"},
		{"^"},
	}
)

type pqParser struct {
	s string
	i int
}

// parsePromQL parses expr, with Grafana variables already substituted.
func parsePromQL(expr string) (pqNode, error) {
	p := &pqParser{s: expr}
	n, err := p.expr(0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i < len(p.s) {
		return nil, fmt.Errorf("unexpected %q at %d", p.s[p.i:], p.i)
	}
	return n, nil
}

func (p *pqParser) space() { p.i = skipSpace(p.s, p.i) }

// word returns the identifier at the current position without consuming it.
func (p *pqParser) word() string {
	p.space()
	j := p.i
	if j < len(p.s) && isIdentStart(p.s[j]) {
		for j < len(p.s) && isIdent(p.s[j]) {
			j++
		}
	}
	return p.s[p.i:j]
}

func (p *pqParser) peek(tok string) bool {
	p.space()
	return strings.HasPrefix(p.s[p.i:], tok)
}

func (p *pqParser) expect(tok string) error {
	if !p.peek(tok) {
		return fmt.Errorf("want %q at %d in %q", tok, p.i, p.s)
	}
	p.i += len(tok)
	return nil
}

// binaryOp reports the operator of precedence level at the current position.
func (p *pqParser) binaryOp(level int) string {
	p.space()
	for _, op := range pqPrecedence[level] {
		if isIdentStart(op[0]) {
			if strings.EqualFold(p.word(), op) {
				return op
			}
			continue
		}
		if !strings.HasPrefix(p.s[p.i:], op) {
			continue
		}
		// "<" is not "<=", "=" alone is no operator, "=~" belongs to matchers.
		if (op == "<" || op == ">") && strings.HasPrefix(p.s[p.i+1:], "=") {
			continue
		}
		return op
	}
	return ""
}

func (p *pqParser) labelList() ([]string, error) {
	if err := p.expect("("); err != nil {
		return nil, err
	}
	var out []string
	for {
		p.space()
		if p.peek(")") {
			p.i++
			return out, nil
		}
		w := p.word()
		if w == "" {
			return nil, fmt.Errorf("want a label name at %d in %q", p.i, p.s)
		}
		out = append(out, w)
		p.i += len(w)
		if p.peek(",") {
			p.i++
		}
	}
}

func (p *pqParser) expr(level int) (pqNode, error) {
	if level == len(pqPrecedence) {
		return p.unary()
	}
	lhs, err := p.expr(level + 1)
	if err != nil {
		return nil, err
	}
	for {
		op := p.binaryOp(level)
		if op == "" {
			return lhs, nil
		}
		p.i += len(op)
		b := pqBinary{op: op, lhs: lhs}
		if strings.EqualFold(p.word(), "bool") {
			b.returnBool = true
			p.i += len("bool")
		}
		if w := strings.ToLower(p.word()); w == "on" || w == "ignoring" {
			p.i += len(w)
			b.matching = w
			if _, err := p.labelList(); err != nil {
				return nil, err
			}
			if w := strings.ToLower(p.word()); w == "group_left" || w == "group_right" {
				p.i += len(w)
				b.group = w
				if p.peek("(") {
					if _, err := p.labelList(); err != nil {
						return nil, err
					}
				}
			}
		}
		next := level + 1
		if op == "^" {
			next = level // right-associative
		}
		if b.rhs, err = p.expr(next); err != nil {
			return nil, err
		}
		lhs = b
	}
}

func (p *pqParser) unary() (pqNode, error) {
	p.space()
	if p.i < len(p.s) && (p.s[p.i] == '-' || p.s[p.i] == '+') {
		op := p.s[p.i : p.i+1]
		p.i++
		e, err := p.unary()
		if err != nil {
			return nil, err
		}
		return pqUnary{op, e}, nil
	}
	e, err := p.primary()
	if err != nil {
		return nil, err
	}
	return p.postfix(e)
}

// postfix reads range selectors, subqueries, offset and @ after e.
func (p *pqParser) postfix(e pqNode) (pqNode, error) {
	for {
		p.space()
		switch {
		case p.peek("["):
			j := strings.IndexByte(p.s[p.i:], ']')
			if j < 0 {
				return nil, errors.New("unterminated [")
			}
			e = pqRange{e, p.s[p.i : p.i+j+1]}
			p.i += j + 1
		case strings.EqualFold(p.word(), "offset"):
			p.i += len("offset")
			p.space()
			j := p.i
			for j < len(p.s) && (isIdent(p.s[j]) || p.s[j] == '-' || p.s[j] == '.') {
				j++
			}
			e = pqRange{e, " offset " + p.s[p.i:j]}
			p.i = j
		case p.peek("@"):
			// @ <timestamp>, @ start(), @ end()
			p.i++
			p.space()
			j := p.i
			for j < len(p.s) && (isIdent(p.s[j]) || p.s[j] == '.') {
				j++
			}
			if strings.HasPrefix(p.s[j:], "()") {
				j += 2
			}
			e = pqRange{e, " @ " + p.s[p.i:j]}
			p.i = j
		default:
			return e, nil
		}
	}
}

func (p *pqParser) primary() (pqNode, error) {
	p.space()
	if p.i >= len(p.s) {
		return nil, fmt.Errorf("unexpected end of %q", p.s)
	}
	c := p.s[p.i]
	switch {
	case c == '(':
		p.i++
		e, err := p.expr(0)
		if err != nil {
			return nil, err
		}
		if err := p.expect(")"); err != nil {
			return nil, err
		}
		return pqParen{e}, nil
	case c == '"' || c == '\'' || c == '`':
		v, next, err := readString(p.s, p.i)
		if err != nil {
			return nil, err
		}
		p.i = next
		return pqString{v}, nil
	case c == '{':
		ms, next, err := readMatchers(p.s, p.i)
		if err != nil {
			return nil, err
		}
		p.i = next
		sel := selector{matchers: ms}
		for _, m := range ms {
			if m.name == "__name__" && m.op == "=" {
				sel.metric = m.value
			}
		}
		return pqSelector{sel}, nil
	case c >= '0' && c <= '9' || c == '.':
		j := p.i
		for j < len(p.s) && (isIdent(p.s[j]) || p.s[j] == '.' ||
			((p.s[j] == '+' || p.s[j] == '-') && (p.s[j-1] == 'e' || p.s[j-1] == 'E'))) {
			j++
		}
		n := pqNumber{p.s[p.i:j]}
		p.i = j
		return n, nil
	case isIdentStart(c):
	default:
		return nil, fmt.Errorf("unexpected %q at %d in %q", c, p.i, p.s)
	}

	w := p.word()
	lower := strings.ToLower(w)
	p.i += len(w)
	switch {
	case lower == "inf" || lower == "nan":
		return pqNumber{w}, nil
	case pqAggregations[lower] && (p.peek("(") || slices.Contains([]string{"by", "without"}, strings.ToLower(p.word()))):
		return p.aggregate(lower)
	case p.peek("("):
		p.i++
		call := pqCall{fn: lower}
		for !p.peek(")") {
			a, err := p.expr(0)
			if err != nil {
				return nil, err
			}
			call.args = append(call.args, a)
			if p.peek(",") {
				p.i++
			}
		}
		p.i++
		return call, nil
	}
	sel := selector{metric: w}
	if p.peek("{") {
		ms, next, err := readMatchers(p.s, p.i)
		if err != nil {
			return nil, err
		}
		sel.matchers, p.i = ms, next
	}
	return pqSelector{sel}, nil
}

// aggregate parses "op [by|without (labels)] ([param,] expr) [by|without (labels)]".
func (p *pqParser) aggregate(op string) (pqNode, error) {
	a := pqAggregate{op: op}
	grouping := func() error {
		if w := strings.ToLower(p.word()); w == "by" || w == "without" {
			p.i += len(w)
			labels, err := p.labelList()
			if err != nil {
				return err
			}
			a.grouping, a.labels = w, labels
		}
		return nil
	}
	if err := grouping(); err != nil {
		return nil, err
	}
	if err := p.expect("("); err != nil {
		return nil, err
	}
	e, err := p.expr(0)
	if err != nil {
		return nil, err
	}
	if pqParamAggregations[op] {
		if err := p.expect(","); err != nil {
			return nil, err
		}
		a.param = e
		if e, err = p.expr(0); err != nil {
			return nil, err
		}
	}
	a.expr = e
	if err := p.expect(")"); err != nil {
		return nil, err
	}
	if a.grouping == "" {
		if err := grouping(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// fleetLabels are the labels with a value per node, network namespace, pod
// or listener: a result keeping one of them has more series the more nodes
// are selected.
var fleetLabels = []string{"instance", "netns", "namespace", "pod", "pod_uid", "container", "listener", "port", "process", "inode"}

// isScalar reports whether n is a scalar expression (a number, time(), ...).
func isScalar(n pqNode) bool {
	switch n := n.(type) {
	case pqNumber:
		return true
	case pqParen:
		return isScalar(n.expr)
	case pqUnary:
		return isScalar(n.expr)
	case pqCall:
		return n.fn == "scalar" || n.fn == "time" || n.fn == "pi"
	case pqBinary:
		return isScalar(n.lhs) && isScalar(n.rhs)
	}
	return false
}

// bounded reports whether the number of series n returns is bounded
// whatever the number of nodes selected, and if not, why.
func bounded(n pqNode) (bool, string) {
	switch n := n.(type) {
	case pqNumber, pqString:
		return true, ""
	case pqSelector:
		return false, n.sel.metric + " returns a series per node (or listener)"
	case pqParen:
		return bounded(n.expr)
	case pqUnary:
		return bounded(n.expr)
	case pqRange:
		return bounded(n.expr)
	case pqCall:
		switch n.fn {
		case "vector", "time", "pi", "scalar", "absent", "absent_over_time":
			return true, ""
		}
		for _, a := range n.args {
			if ok, why := bounded(a); !ok {
				return false, why
			}
		}
		return true, ""
	case pqAggregate:
		// One series per group: bounded when no group label has a value
		// per node (a plain sum or topk has a single group).
		if n.grouping != "without" && !slices.ContainsFunc(n.labels, func(l string) bool { return slices.Contains(fleetLabels, l) }) {
			return true, ""
		}
		if ok, _ := bounded(n.expr); ok {
			return true, ""
		}
		return false, fmt.Sprintf("%s %s (%s) keeps a label with a value per node", n.op, n.grouping, strings.Join(n.labels, ", "))
	case pqBinary:
		lok, lwhy := bounded(n.lhs)
		rok, rwhy := bounded(n.rhs)
		switch {
		case n.op == "and":
			if lok || rok {
				return true, ""
			}
		case n.op == "or":
			if !lok {
				return false, lwhy
			}
			return rok, rwhy
		case n.op == "unless":
			return lok, lwhy
		case isScalar(n.lhs):
			return rok, rwhy
		case isScalar(n.rhs):
			return lok, lwhy
		case n.group == "group_left":
			return lok, lwhy
		case n.group == "group_right":
			return rok, rwhy
		case lok || rok: // one-to-one: at most the smaller side
			return true, ""
		}
		return false, lwhy + "; " + rwhy
	}
	return false, fmt.Sprintf("unknown node %T", n)
}

func TestParsePromQL(t *testing.T) {
	for _, tc := range []struct {
		expr, want string
		bounded    bool
	}{
		{`topk(10, a{x=~".+"})`, `topk (10, a{…})`, true},
		{`topk(10, a) > 0`, `(topk (10, a{…}) > 0)`, true},
		{`a and topk(5, b)`, `(a{…} and topk (5, b{…}))`, true},
		{`count(a > 0.8) or vector(0)`, `(count ((a{…} > 0.8)) or vector(0))`, true},
		{`sum by (instance, netns) (rate(x_total[5m]))`, `sum by (instance, netns) (rate(x_total{…}[5m]))`, false},
		{`sum(rate(x_total[5m])) by (state)`, `sum by (state) (rate(x_total{…}[5m]))`, true},
		{`max without (inode) (a)`, `max without (inode) (a{…})`, false},
		{`0 * (a and topk(2, b)) + on (job, pod) group_left () c`, `((0 * ((a{…} and topk (2, b{…})))) + on(…) group_left c{…})`, true},
		{`a == bool on (pod) group_left () topk(3, c)`, `(a{…} == bool on(…) group_left topk (3, c{…}))`, false},
		{`topk by (instance) (1, a)`, `topk by (instance) (1, a{…})`, false},
		{`bottomk(10, up{job=~".+"}) offset 5m`, `bottomk (10, up{…}) offset 5m`, true},
		{`1 - a ^ 2 ^ 3`, `(1 - (a{…} ^ (2 ^ 3)))`, false},
		{`a <= b unless c`, `((a{…} <= b{…}) unless c{…})`, false},
		{`count by (version, goversion) (build_info)`, `count by (version, goversion) (build_info{…})`, true},
		{`-topk(1, a)[5m:1m]`, `-topk (1, a{…})[5m:1m]`, true},
		{`a and on (job) topk(10, max_over_time(a[1h] @ end()))`, `(a{…} and on(…) topk (10, max_over_time(a{…}[1h] @ end())))`, true},
		{`sum(b @ 1700000000.5) by (le)`, `sum by (le) (b{…} @ 1700000000.5)`, true},
	} {
		n, err := parsePromQL(tc.expr)
		if err != nil {
			t.Errorf("parsePromQL(%q): %v", tc.expr, err)
			continue
		}
		if got := n.String(); got != tc.want {
			t.Errorf("parsePromQL(%q) = %s, want %s", tc.expr, got, tc.want)
		}
		if got, why := bounded(n); got != tc.bounded {
			t.Errorf("bounded(%q) = %v (%s), want %v", tc.expr, got, why, tc.bounded)
		}
	}
}
