// The Go peer of benches/compare: the Go seed's pattern, a buffered
// channel of --queue messages feeding --workers goroutines that each POST
// with one shared net/http Client (keep-alive, MaxIdleConnsPerHost =
// workers). Notify is a non-blocking channel send: a select with a
// default case, which rejects the message when the channel is full.
//
// The harness builds it with `go build` (standard library only) and runs
// it as a child process, one per run, driven over stdin and stdout, one
// line each way per command:
//
//	run N INTERVAL_NS  send N messages, one every INTERVAL_NS (a decimal
//	                   number; 0: as fast as Notify takes them); reply
//	                   when all are handed over: Notify p50/p99/p99.9 and
//	                   how late the sends were (p50) in ns, and the
//	                   rejected attempts
//	cpu                reply with the process's CPU time (getrusage,
//	                   every thread, user + system) in ns
//	(end of input)     stop: deliver what is queued, reply with the
//	                   failures, exit
//
// Replies are one flat JSON object of numbers, and every reply carries
// "failures": deliveries that failed so far (none are expected).
//
// Pacing is the harness's: message i is due at start + i*INTERVAL_NS, the
// producer sleeps until then (time.Sleep) if it is ahead, and sends at
// once if it is behind. Go's timers are coarser than a Linux thread's
// nanosleep: where nothing else is runnable, the runtime waits for a timer
// in epoll_pwait, whose timeout is in milliseconds, so a short sleep lasts
// about a millisecond, and at 20 k msgs/s the producer sends bursts of
// about 20 messages a millisecond apart. The "late" figure shows it.
//
// A full channel is retried as the harness's producers do: a few quick
// retries, then runtime.Gosched, then 50 µs sleeps.
//
// Every body starts with the send time as the harness's sink reads it: 20
// decimal digits of ns since the harness's epoch. The harness passes that
// epoch as a CLOCK_MONOTONIC reading (-epoch-mono-ns); the peer reads
// CLOCK_MONOTONIC once next to time.Now, and from then on stamps the
// offset plus Go's own monotonic time elapsed.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// stampLen is the digits of the send time at the start of each body.
const stampLen = 20

// Notifier is the Go seed's client: a queue, its workers, one http.Client.
type Notifier struct {
	queue       chan []byte
	url         *url.URL
	contentType []string
	client      *http.Client
	workers     sync.WaitGroup
	failures    atomic.Uint64
}

// NewNotifier starts workers goroutines on a queue of queueSize messages.
func NewNotifier(u *url.URL, contentType string, workers, queueSize int) *Notifier {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = workers
	transport.MaxIdleConnsPerHost = workers
	n := &Notifier{
		queue:       make(chan []byte, queueSize),
		url:         u,
		contentType: []string{contentType},
		client:      &http.Client{Transport: transport, Timeout: 10 * time.Second},
	}
	for i := 0; i < workers; i++ {
		n.workers.Add(1)
		go n.work()
	}
	return n
}

// Notify hands msg over without waiting; false when the queue is full.
func (n *Notifier) Notify(msg []byte) bool {
	select {
	case n.queue <- msg:
		return true
	default:
		return false
	}
}

// Stop delivers what is queued and waits for the workers.
func (n *Notifier) Stop() {
	close(n.queue)
	n.workers.Wait()
}

func (n *Notifier) work() {
	defer n.workers.Done()
	for msg := range n.queue {
		if err := n.post(msg); err != nil {
			if n.failures.Add(1) <= 5 {
				fmt.Fprintln(os.Stderr, "go peer: a notification failed:", err)
			}
		}
	}
}

func (n *Notifier) post(msg []byte) error {
	req := &http.Request{
		Method:        http.MethodPost,
		URL:           n.url,
		Host:          n.url.Host,
		Header:        http.Header{"Content-Type": n.contentType},
		Body:          io.NopCloser(bytes.NewReader(msg)),
		ContentLength: int64(len(msg)),
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return err
	}
	// Read the (empty) body so the connection is reused.
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// monotonicNs reads CLOCK_MONOTONIC, the clock the harness's epoch is on.
func monotonicNs() int64 {
	var ts syscall.Timespec
	// CLOCK_MONOTONIC is 1 on Linux.
	syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, 1, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Nano()
}

// Clock gives ns since the harness's epoch.
type Clock struct {
	base   time.Time
	offset int64
}

// NewClock ties Go's monotonic time to CLOCK_MONOTONIC: of a few
// readings of time.Now between two of CLOCK_MONOTONIC, the closest pair.
func NewClock(epochMonoNs int64) Clock {
	best := Clock{}
	bestGap := int64(-1)
	for i := 0; i < 8; i++ {
		before := monotonicNs()
		now := time.Now()
		after := monotonicNs()
		if gap := after - before; bestGap < 0 || gap < bestGap {
			bestGap = gap
			best = Clock{base: now, offset: before + gap/2 - epochMonoNs}
		}
	}
	return best
}

// Now is ns since the harness's epoch.
func (c Clock) Now() int64 {
	return c.offset + int64(time.Since(c.base))
}

// stamp writes ns as the first stampLen digits of body, zero-padded.
func stamp(body []byte, ns int64) {
	if len(body) < stampLen {
		return
	}
	n := uint64(ns)
	for i := stampLen - 1; i >= 0; i-- {
		body[i] = byte('0' + n%10)
		n /= 10
	}
}

// backOff waits before retrying a full queue.
func backOff(attempt int) {
	switch {
	case attempt <= 5:
	case attempt <= 9:
		runtime.Gosched()
	default:
		time.Sleep(50 * time.Microsecond)
	}
}

// quantile of sorted samples, by nearest rank.
func quantile(sorted []int64, q float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(q*float64(len(sorted))+0.999999999) - 1
	if rank < 0 {
		rank = 0
	}
	if rank >= len(sorted) {
		rank = len(sorted) - 1
	}
	return sorted[rank]
}

// run sends count messages of size bytes, one every intervalNs (none if
// zero), and describes what it measured as JSON fields.
func run(n *Notifier, clock Clock, count, size int, intervalNs float64) string {
	latency := make([]int64, 0, count)
	late := make([]int64, 0, count)
	template := bytes.Repeat([]byte{'.'}, size)
	rejected := 0
	start := time.Now()
	for i := 0; i < count; i++ {
		if intervalNs > 0 {
			due := start.Add(time.Duration(float64(i) * intervalNs))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
			late = append(late, int64(time.Since(due)))
		}
		// The message's own buffer is the caller's, as in the harness.
		body := append([]byte(nil), template...)
		for attempt := 0; ; attempt++ {
			before := time.Now()
			stamp(body, clock.Now())
			if n.Notify(body) {
				latency = append(latency, int64(time.Since(before)))
				break
			}
			rejected++
			backOff(attempt)
		}
	}
	sort.Slice(latency, func(a, b int) bool { return latency[a] < latency[b] })
	sort.Slice(late, func(a, b int) bool { return late[a] < late[b] })
	fields := fmt.Sprintf(`"notify_p50_ns":%d,"notify_p99_ns":%d,"notify_p999_ns":%d,"rejected":%d`,
		quantile(latency, 0.5), quantile(latency, 0.99), quantile(latency, 0.999), rejected)
	if intervalNs > 0 {
		fields += fmt.Sprintf(`,"late_p50_ns":%d`, quantile(late, 0.5))
	}
	return fields
}

// cpuNs is the process's CPU time, every thread, user + system.
func cpuNs() int64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return -1
	}
	return usage.Utime.Nano() + usage.Stime.Nano()
}

func main() {
	target := flag.String("url", "", "the sink's URL")
	workers := flag.Int("workers", 10, "simultaneous requests")
	queue := flag.Int("queue", 1000, "messages the channel holds")
	size := flag.Int("size", 64, "bytes per message")
	contentType := flag.String("content-type", "application/json", "the requests' Content-Type")
	epoch := flag.Int64("epoch-mono-ns", 0, "the harness's epoch, CLOCK_MONOTONIC ns")
	flag.Parse()
	u, err := url.Parse(*target)
	if err != nil || *target == "" {
		fmt.Fprintln(os.Stderr, "go peer: -url: a URL is needed:", err)
		os.Exit(2)
	}
	clock := NewClock(*epoch)
	n := NewNotifier(u, *contentType, *workers, *queue)
	reply := func(fields string) {
		if fields != "" {
			fields += ","
		}
		fmt.Printf("{%s\"failures\":%d}\n", fields, n.failures.Load())
	}

	commands := bufio.NewScanner(os.Stdin)
	for commands.Scan() {
		words := strings.Fields(commands.Text())
		switch {
		case len(words) == 3 && words[0] == "run":
			count, err1 := strconv.Atoi(words[1])
			interval, err2 := strconv.ParseFloat(words[2], 64)
			if err1 != nil || err2 != nil || count < 0 || interval < 0 {
				fmt.Fprintln(os.Stderr, "go peer: bad command:", commands.Text())
				os.Exit(2)
			}
			reply(run(n, clock, count, *size, interval))
		case len(words) == 1 && words[0] == "cpu":
			reply(fmt.Sprintf(`"cpu_ns":%d`, cpuNs()))
		default:
			fmt.Fprintln(os.Stderr, "go peer: unknown command:", commands.Text())
			os.Exit(2)
		}
	}
	n.Stop()
	reply("")
}
