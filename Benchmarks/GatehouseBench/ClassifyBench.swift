import CPgQuery
import Foundation
import GatehouseCore
import GatehouseGuard

/// In-process classification throughput on one thread (one core), against PostgreSQL's parser alone
/// as the baseline measured in the same run.
enum ClassifyBench {
    /// What an application sends: short reads and writes, a few joins, an upsert, a transaction.
    static let mix = [
        "SELECT id, email, created_at FROM users WHERE id = $1",
        "SELECT * FROM orders WHERE customer_id = $1 AND state = 'open' ORDER BY created_at DESC LIMIT 50",
        "SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.created_at > now() - interval '1 day'",
        "INSERT INTO events (kind, payload, at) VALUES ($1, $2, now())",
        "UPDATE orders SET state = 'paid', paid_at = now() WHERE id = $1",
        "DELETE FROM sessions WHERE expires_at < now()",
        "INSERT INTO counters (key, n) VALUES ($1, 1) ON CONFLICT (key) DO UPDATE SET n = counters.n + 1",
        "SELECT count(*) FROM invoices WHERE due_at < now() AND paid_at IS NULL",
        "BEGIN", "COMMIT",
        "SELECT p.sku, sum(li.qty) AS sold FROM line_items li JOIN products p ON p.id = li.product_id GROUP BY p.sku HAVING sum(li.qty) > 10",
        "WITH recent AS (SELECT * FROM orders WHERE created_at > now() - interval '7 days') SELECT customer_id, count(*) FROM recent GROUP BY 1",
        "SELECT 1",
        "UPDATE users SET last_seen = now() WHERE id = ANY($1)",
        "SELECT id FROM jobs WHERE state = 'queued' ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED",
        "SET statement_timeout = '5s'",
    ]

    /// The mix's kind of statements with their values written as constants, a new value each call.
    static let literals: [@Sendable (Int) -> String] = [
        { "SELECT id, email, created_at FROM users WHERE id = \($0)" },
        { "SELECT * FROM orders WHERE customer_id = \($0) AND state = 'open' ORDER BY created_at DESC LIMIT 50" },
        { "INSERT INTO events (kind, payload, at) VALUES ('k\($0 % 10)', '{\"n\": \($0)}', now())" },
        { "UPDATE orders SET state = 'paid', paid_at = now() WHERE id = \($0)" },
        { "UPDATE pgbench_accounts SET abalance = abalance + -\($0 % 5000) WHERE aid = \($0);" },
        { "DELETE FROM sessions WHERE id = \($0)" },
        { "SELECT abalance FROM pgbench_accounts WHERE aid = \($0);" },
        { "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (\($0 % 100), \($0 % 10), \($0), \($0 % 5000), CURRENT_TIMESTAMP);" },
    ]

    static var long: [String] {
        let values = (0..<200).map { "(\($0), 'customer \($0)', 'c\($0)@example.com', now(), \($0 % 7))" }.joined(separator: ", ")
        let insert = "INSERT INTO customers (id, name, email, created_at, tier) VALUES " + values
        let ors = (0..<300).map { "(a.k\($0 % 20) = b.k\($0 % 20) AND a.v > \($0))" }.joined(separator: " OR ")
        let select = "SELECT a.*, b.* FROM left_side a JOIN right_side b ON a.id = b.id WHERE " + ors
        return [insert, select]
    }

    static func run(seconds: Double) {
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            let classifier = SQLClassifier()
            print("statement sizes: mix \(mix.map(\.utf8.count).min()!)-\(mix.map(\.utf8.count).max()!) bytes; long \(long.map(\.utf8.count).map(String.init).joined(separator: ", ")) bytes")
            let parse = { (text: String) in
                let result = pg_query_parse(text)
                pg_query_free_parse_result(result)
            }
            for (name, statements) in [("mix", mix), ("long", long)] {
                let rates = compare(seconds / 2, statements, [parse, { _ = classifier.classify($0) }])
                print(String(format: "%@: classify %.0f statements/s (%.1f µs each); PostgreSQL parser alone %.0f/s; ratio %.3f",
                             name, rates[1], 1e6 / rates[1], rates[0], rates[1] / rates[0]))
            }
            // Statements whose constants change every time (what pgbench and applications that do not
            // bind parameters send): a text is seen again only after 100,000 others, so only the memory
            // by shape can help. Written before the clock starts, so that making them is not measured.
            let texts = (1...100_000).map { literals[$0 % literals.count]($0) }
            let guardian = ActionGuard()
            let settings = GuardSettings()
            let rates = compare(seconds * 3 / 4, texts, [parse, { _ = classifier.classify($0) },
                                                        { _ = guardian.classifyInline(Action(kind: .sql, text: $0), settings: settings) }])
            let (parseOnly, fresh, byShape) = (rates[0], rates[1], rates[2])
            print(String(format: "new constants each time: classify %.0f/s; through ActionGuard (remembered by shape) %.0f/s (%.1f µs each); parser alone %.0f/s; ratios %.3f and %.3f",
                         fresh, byShape, 1e6 / byShape, parseOnly, fresh / parseOnly, byShape / parseOnly))
            done.signal()
        }
        thread.stackSize = ParserThreads.stackSize
        thread.start()
        done.wait()
    }

    /// Through `ActionGuard` (parser threads, remembered results), as the server calls it: the mix
    /// repeats, so after the first round every statement is answered from memory.
    static func remembered(seconds: Double) async {
        let guardian = ActionGuard()
        let settings = GuardSettings()
        let actions = mix.map { Action(kind: .sql, text: $0) }
        var count = 0
        let start = DispatchTime.now().uptimeNanoseconds
        let limit = start + UInt64(seconds * 1e9)
        while DispatchTime.now().uptimeNanoseconds < limit {
            for action in actions { _ = await guardian.classify(action, settings: settings) }
            count += actions.count
        }
        let rate = Double(count) / (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        print(String(format: "mix through ActionGuard, remembered: %.0f statements/s (%.2f µs each)", rate, 1e6 / rate))
    }

    /// Each body's rate (statements per second of this thread's CPU time) over `seconds` in all, the
    /// bodies taking turns in slices of about 20 ms each, every body going through the same texts in
    /// the same order: a machine that slows down, or takes the core away, part way through the run
    /// slows every body alike, so their ratios hold.
    static func compare(_ seconds: Double, _ texts: [String], _ bodies: [(String) -> Void]) -> [Double] {
        let slice: UInt64 = 20_000_000
        let batch = 64
        var counts = [Int](repeating: 0, count: bodies.count)
        var times = [UInt64](repeating: 0, count: bodies.count)
        var positions = [Int](repeating: 0, count: bodies.count)
        for body in bodies { for text in texts.prefix(100) { body(text) } }  // warm-up
        let limit = DispatchTime.now().uptimeNanoseconds + UInt64(max(seconds, 0.1) * 1e9)
        while DispatchTime.now().uptimeNanoseconds < limit {
            for (index, body) in bodies.enumerated() {
                var position = positions[index]
                let start = threadTime()
                var now = start
                while now - start < slice {
                    for _ in 0..<batch {
                        body(texts[position])
                        position = position + 1 == texts.count ? 0 : position + 1
                    }
                    counts[index] += batch
                    now = threadTime()
                }
                positions[index] = position
                times[index] += now - start
            }
        }
        return zip(counts, times).map { Double($0) / (Double($1) / 1e9) }
    }

    /// This thread's CPU time in nanoseconds.
    static func threadTime() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}
