package contract

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// cutProxy is a TCP proxy on loopback that, once armed, cuts the first
// connection whose server answers next: it closes both sides instead of
// passing the answer on, as a network that dies after a statement was
// executed does, and with it every other connection open at that moment
// (the pool's idle ones). Connections made later pass.
type cutProxy struct {
	ln    net.Listener
	armed atomic.Bool
	cuts  atomic.Int64
	mu    sync.Mutex
	conns []net.Conn
}

// newCutProxy starts a proxy in front of upstream (host:port), closed when
// the test ends.
func newCutProxy(t *testing.T, upstream string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	p := &cutProxy{ln: ln}
	go p.serve(upstream)
	t.Cleanup(p.close)
	return p
}

// addr is the proxy's host:port.
func (p *cutProxy) addr() *net.TCPAddr { return p.ln.Addr().(*net.TCPAddr) }

func (p *cutProxy) serve(upstream string) {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", upstream)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go func() { io.Copy(s, c); s.Close() }()
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := s.Read(buf)
				if n > 0 && p.armed.CompareAndSwap(true, false) {
					p.cuts.Add(1)
					p.closeAll()
					return
				}
				if n > 0 {
					if _, werr := c.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			c.Close()
		}()
	}
}

func (p *cutProxy) close() {
	p.ln.Close()
	p.closeAll()
}

func (p *cutProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
