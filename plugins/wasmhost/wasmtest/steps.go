package wasmtest

// Step is one host call of a scripted test guest: Fn with i32 arguments, its result (if any)
// stored little-endian at Store, or dropped when Store is negative.
type Step struct {
	Fn    string
	Args  []int32
	Store int32
}

// Call is a step whose result is dropped (or that has none).
func Call(fn string, args ...int32) Step { return Step{Fn: fn, Args: args, Store: -1} }

// CallTo is a step whose result is stored at off.
func CallTo(off int32, fn string, args ...int32) Step { return Step{Fn: fn, Args: args, Store: off} }

// StepImports returns the host functions the steps call, each once, in order of first use: the
// Imports of a Guest that runs them.
func StepImports(steps ...[]Step) []string {
	seen := map[string]bool{}
	var out []string
	for _, ss := range steps {
		for _, s := range ss {
			if !seen[s.Fn] {
				seen[s.Fn] = true
				out = append(out, s.Fn)
			}
		}
	}
	return out
}

// Steps appends the steps to c as calls through g's imports.
func (g Guest) Steps(c *Code, steps []Step) *Code {
	for _, s := range steps {
		sig := HTTPHandler[s.Fn]
		if s.Store >= 0 && len(sig.Results) == 1 {
			c.I32(s.Store)
		}
		for _, a := range s.Args {
			c.I32(a)
		}
		c.Call(g.Fn(s.Fn))
		if len(sig.Results) == 1 {
			switch {
			case s.Store < 0:
				c.Drop()
			case sig.Results[0] == I64:
				c.I64Store()
			default:
				c.I32Store()
			}
		}
	}
	return c
}
