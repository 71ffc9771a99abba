import GatehouseCore
import NIOCore
import Testing
@testable import GatehouseProxy

/// `StatementFlow` alone: client frames are decoded from hand-built bytes, what it forwards is
/// decoded again, and database answers are hand-built backend messages.
@Suite struct StatementFlowTests {
    /// A flow past sign-in: the database's first ReadyForQuery has gone through it.
    static func signedIn(_ nonce: String) -> StatementFlow {
        var flow = StatementFlow(nonce: nonce)
        var bytes = ByteBuffer(bytes: B.readyForQuery())
        var decoder = BackendDecoder()
        _ = flow.answer(try! decoder.next(&bytes)!)
        return flow
    }

    typealias B = WireBytes

    /// Close's kind byte for a prepared statement.
    static let statementKind = UInt8(ascii: "S")

    // MARK: helpers

    private func frame(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) throws -> FrontendFrame {
        try B.frontendFrame(bytes, sourceLocation: sourceLocation)
    }

    private func backend(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) throws -> BackendFrame {
        try B.backendFrame(bytes, sourceLocation: sourceLocation)
    }

    private func backend(_ buffer: ByteBuffer, sourceLocation: SourceLocation = #_sourceLocation) throws -> BackendFrame {
        try B.backendFrame(buffer, sourceLocation: sourceLocation)
    }

    /// The bytes of a `.forward` step; nil for any other step.
    private func forwarded(_ step: StatementFlow.Step) -> ByteBuffer? {
        if case .forward(let bytes) = step { return bytes }
        return nil
    }

    private func messages(_ buffer: ByteBuffer, sourceLocation: SourceLocation = #_sourceLocation) throws -> [FrontendMessage] {
        try B.frontendMessages(buffer, sourceLocation: sourceLocation)
    }

    /// Checks `text` is a refusal statement for `nonce` and returns its marker literal.
    private func checkedMarker(in text: String, nonce: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let parts = text.split(separator: "'", omittingEmptySubsequences: false)
        try #require(parts.count == 3, "not a marker statement: \(text)", sourceLocation: sourceLocation)
        let marker = String(parts[1])
        #expect(text == "SELECT '\(marker)'::pg_catalog.int4", sourceLocation: sourceLocation)
        #expect(text.contains("::pg_catalog.int4"), sourceLocation: sourceLocation)
        #expect(marker.hasPrefix("gatehouse-refused-\(nonce)-"), sourceLocation: sourceLocation)
        #expect(Int(marker.dropFirst("gatehouse-refused-\(nonce)-".count)) != nil, "the marker ends in its sequence number",
                sourceLocation: sourceLocation)
        return marker
    }

    /// The marker of a refusal sent as one simple Query.
    private func queryMarker(_ buffer: ByteBuffer, nonce: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let sent = try messages(buffer, sourceLocation: sourceLocation)
        guard sent.count == 1, case .query(let text) = sent[0] else {
            Issue.record("expected one marker Query, got \(sent)", sourceLocation: sourceLocation)
            throw WireError("not a marker Query")
        }
        return try checkedMarker(in: text, nonce: nonce, sourceLocation: sourceLocation)
    }

    /// The marker of a refusal sent as one Parse of the unnamed statement.
    private func parseMarker(_ buffer: ByteBuffer, nonce: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let sent = try messages(buffer, sourceLocation: sourceLocation)
        guard sent.count == 1, case .parse(let name, let text) = sent[0] else {
            Issue.record("expected one marker Parse, got \(sent)", sourceLocation: sourceLocation)
            throw WireError("not a marker Parse")
        }
        #expect(name == "", "the marker is parsed as the unnamed statement", sourceLocation: sourceLocation)
        return try checkedMarker(in: text, nonce: nonce, sourceLocation: sourceLocation)
    }

    /// What PostgreSQL answers to `SELECT '<marker>'::pg_catalog.int4`.
    private func markerError(_ marker: String) throws -> BackendFrame {
        try backend(Wire.error(code: "22P02", message: "invalid input syntax for type integer: \"\(marker)\""))
    }

    /// Asserts `answer` replaced the database's error with `refusal`.
    private func expectRefusal(_ answer: ByteBuffer?, _ refusal: Refusal, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let answered = try #require(answer, "the marker error must be answered", sourceLocation: sourceLocation)
        let fields = try #require(try B.errorFields(answered, sourceLocation: sourceLocation), sourceLocation: sourceLocation)
        #expect(fields["S"] == "ERROR", sourceLocation: sourceLocation)
        #expect(fields["C"] == refusal.code, sourceLocation: sourceLocation)
        #expect(fields["M"] == refusal.message, sourceLocation: sourceLocation)
        #expect(fields["H"] == refusal.hint, sourceLocation: sourceLocation)
        #expect(fields["M"]?.contains("gatehouse-refused") == false, "the marker is not shown to the client", sourceLocation: sourceLocation)
    }

    private func bytes(_ buffer: ByteBuffer?) -> [UInt8]? { buffer.map { Array($0.readableBytesView) } }

    /// Binds the prepared statement `name` to the unnamed portal, allows it, and executes it.
    private func run(_ flow: inout StatementFlow, _ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        _ = flow.receive(try frame(B.bind(statement: name), sourceLocation: sourceLocation))
        _ = flow.decided(nil)
        _ = flow.receive(try frame(B.execute(), sourceLocation: sourceLocation))
    }

    // MARK: simple Query

    @Test func queryIsCheckedThenForwardedAsItWas() throws {
        var flow = Self.signedIn("q1")
        let query = B.query("SELECT * FROM accounts WHERE id = 1")
        let step = flow.receive(try frame(query))
        #expect(step == .check("SELECT * FROM accounts WHERE id = 1"))
        let out = flow.decided(nil)
        #expect(Array(out.readableBytesView) == query, "an allowed Query goes to the database byte for byte")
    }

    @Test func refusedQueryBecomesAMarkerWhoseErrorIsReplaced() throws {
        var flow = Self.signedIn("ab12cd34")
        let step = flow.receive(try frame(B.query("DELETE FROM accounts")))
        #expect(step == .check("DELETE FROM accounts"))
        let refusal = Refusal(code: "42501", message: "Gatehouse refuses writes on prod-db", hint: "request the write role")
        let out = flow.decided(refusal)
        let sent = try messages(out)
        guard sent.count == 1, case .query(let text) = sent[0] else {
            Issue.record("expected a marker Query, got \(sent)")
            return
        }
        #expect(text.contains("gatehouse-refused-ab12cd34-"))
        #expect(text.contains("::pg_catalog.int4"))
        #expect(!text.contains("DELETE"), "the refused statement never reaches the database")
        let marker = try checkedMarker(in: text, nonce: "ab12cd34")

        // An unrelated error passes unchanged.
        let unrelated = Wire.error(code: "42P01", message: "relation \"nope\" does not exist")
        let passed = flow.answer(try backend(unrelated))
        #expect(bytes(passed) == Array(unrelated.readableBytesView))

        // A marker of another session's nonce is not ours.
        let foreign = try backend(Wire.error(code: "22P02", message: "invalid input syntax for type integer: \"gatehouse-refused-ffffffff-1\""))
        #expect(bytes(flow.answer(foreign)) == Array(foreign.bytes.readableBytesView))

        // The marker's error becomes the refusal.
        let markerFrame = try markerError(marker)
        try expectRefusal(flow.answer(markerFrame), refusal)

        // ReadyForQuery passes unchanged: the transaction status is the database's.
        let ready = B.readyForQuery("E")
        #expect(bytes(flow.answer(try backend(ready))) == ready)

        // Each refusal is answered once; the same error again is the database's own.
        #expect(bytes(flow.answer(markerFrame)) == Array(markerFrame.bytes.readableBytesView))
    }

    @Test func refusalsAreMatchedToTheirOwnMarkers() throws {
        var flow = Self.signedIn("n2")
        _ = flow.receive(try frame(B.query("DROP TABLE a")))
        let first = Refusal(message: "first")
        let firstMarker = try queryMarker(flow.decided(first), nonce: "n2")
        _ = flow.receive(try frame(B.query("DROP TABLE b")))
        let second = Refusal(code: "42P01", message: "second", hint: "h")
        let secondMarker = try queryMarker(flow.decided(second), nonce: "n2")
        #expect(firstMarker != secondMarker)
        try expectRefusal(flow.answer(try markerError(firstMarker)), first)
        try expectRefusal(flow.answer(try markerError(secondMarker)), second)
    }

    // MARK: extended protocol

    @Test func parseRenamesTheStatementAndBindUsesTheUpstreamName() throws {
        var flow = Self.signedIn("n0")
        let parse = B.parse("s1", "SELECT $1::int4 + $2", types: [23, 0])
        let parsed = try #require(forwarded(flow.receive(try frame(parse))))
        let sent = try B.frontendFrames(parsed)
        try #require(sent.count == 1)
        #expect(sent[0].message == .parse(statement: "gatehouse_n0_1", query: "SELECT $1::int4 + $2"))
        #expect(B.tail(of: sent[0].bytes, strings: 2) == B.join(B.int16(2), B.int32(23), B.int32(0)),
                "the client's parameter types are kept")
        #expect(flow.preparedCount == 1)

        let bind = B.bind(portal: "p1", statement: "s1")
        let step = flow.receive(try frame(bind))
        #expect(step == .check("SELECT $1::int4 + $2"), "a Bind is judged by the text its statement was prepared from")
        let out = flow.decided(nil)
        let bound = try B.frontendFrames(out)
        try #require(bound.count == 1)
        #expect(bound[0].message == .bind(portal: "p1", statement: "gatehouse_n0_1"))
        #expect(B.tail(of: bound[0].bytes, strings: 2) == B.bindTail, "formats, parameters and result formats are kept")

        // The next Parse gets the next name.
        let second = try #require(forwarded(flow.receive(try frame(B.parse("s2", "SELECT 2")))))
        #expect(try messages(second) == [.parse(statement: "gatehouse_n0_2", query: "SELECT 2")])
        #expect(flow.preparedCount == 2)

        // Execute, Flush and Sync pass as they are.
        for passing in [B.execute(portal: "p1", limit: 3), B.flush, B.sync] {
            let step = flow.receive(try frame(passing))
            #expect(bytes(forwarded(step)) == passing)
        }
    }

    /// A statement no Bind could run (over 256 KiB) is refused at its Parse, and one session's prepared texts are
    /// bounded (16 MiB), so no client holds the shared process's memory with texts it keeps; closing some makes room.
    @Test func preparedTextsAreBounded() throws {
        var flow = Self.signedIn("big")
        let long = "SELECT '" + String(repeating: "x", count: 256 * 1024) + "'"
        let refused = try #require(forwarded(flow.receive(try frame(B.parse("huge", long)))))
        _ = try parseMarker(refused, nonce: "big")
        #expect(flow.preparedCount == 0)
        _ = flow.receive(try frame(B.sync))
        let piece = "SELECT '" + String(repeating: "y", count: 250 * 1024) + "'"
        var prepared = 0
        while prepared < 100 {
            let out = try #require(forwarded(flow.receive(try frame(B.parse("s\(prepared)", piece)))))
            guard case .parse(let name, _)? = try B.frontendFrames(out).first?.message, name.hasPrefix("gatehouse_big_") else { break }
            prepared += 1
        }
        #expect(prepared == (16 << 20) / piece.utf8.count, "\(prepared) texts of 250 KiB were kept")
        #expect(flow.preparedCount == prepared)
        _ = flow.receive(try frame(B.sync))
        // Names count too.
        let named = try #require(forwarded(flow.receive(try frame(B.parse(String(repeating: "n", count: 300 * 1024), "SELECT 1")))))
        _ = try parseMarker(named, nonce: "big")
        _ = flow.receive(try frame(B.sync))
        // Closing one makes room for another.
        _ = flow.receive(try frame(B.close("S", "s0")))
        let again = try #require(forwarded(flow.receive(try frame(B.parse("again", piece)))))
        #expect(try messages(again).first.map { if case .parse(let name, _) = $0 { name.hasPrefix("gatehouse_big_") } else { false } } == true)
    }

    @Test func preparedStatementsAreCounted() throws {
        var flow = Self.signedIn("many")
        for n in 0..<10_000 {
            _ = try #require(forwarded(flow.receive(try frame(B.parse("s\(n)", "")))))
        }
        #expect(flow.preparedCount == 10_000)
        let over = try #require(forwarded(flow.receive(try frame(B.parse("one-more", "")))))
        _ = try parseMarker(over, nonce: "many")
        #expect(flow.preparedCount == 10_000)
        _ = flow.receive(try frame(B.sync))
        _ = flow.receive(try frame(B.close("S", "s0")))
        let room = try #require(forwarded(flow.receive(try frame(B.parse("one-more", "")))))
        #expect(try messages(room).contains { if case .parse(let name, _) = $0 { name.hasPrefix("gatehouse_many_") } else { false } })
        #expect(flow.preparedCount == 10_000)
    }

    @Test func bindOfTheUnnamedStatementIsCheckedToo() throws {
        var flow = Self.signedIn("un")
        _ = flow.receive(try frame(B.parse("", "UPDATE t SET x = 1")))
        let step = flow.receive(try frame(B.bind(statement: "")))
        #expect(step == .check("UPDATE t SET x = 1"))
        let out = flow.decided(nil)
        #expect(try messages(out) == [.bind(portal: "", statement: "gatehouse_un_1")])
    }

    @Test func parseOfANameAlreadyPreparedIsRefusedUntilSync() throws {
        var flow = Self.signedIn("dup")
        _ = try #require(forwarded(flow.receive(try frame(B.parse("s1", "SELECT 1")))))
        let again = try #require(forwarded(flow.receive(try frame(B.parse("s1", "DELETE FROM accounts")))))
        let marker = try parseMarker(again, nonce: "dup")
        #expect(flow.preparedCount == 1)

        // The database discards until Sync after the marker fails; so does the proxy.
        for discarded in [B.bind(statement: "s1"), B.execute(), B.describe("S", "s1"), B.close("S", "s1"),
                          B.parse("s2", "SELECT 2"), B.query("SELECT 3"), B.functionCall] {
            let step = flow.receive(try frame(discarded))
            #expect(step == .drop)
        }
        #expect(flow.preparedCount == 1, "the discarded Close removed nothing and the discarded Parse added nothing")
        let sync = flow.receive(try frame(B.sync))
        #expect(bytes(forwarded(sync)) == B.sync)

        // After Sync, statements are checked again, by the first text.
        let bind = flow.receive(try frame(B.bind(statement: "s1")))
        #expect(bind == .check("SELECT 1"))
        _ = flow.decided(nil)

        try expectRefusal(flow.answer(try markerError(marker)), Refusal(code: "42P05", message: "prepared statement \"s1\" already exists"))
    }

    @Test func bindOfAnUnknownStatementIsRefused() throws {
        var flow = Self.signedIn("unk")
        let refused = try #require(forwarded(flow.receive(try frame(B.bind(portal: "p", statement: "never")))))
        let marker = try parseMarker(refused, nonce: "unk")
        let execute = flow.receive(try frame(B.execute(portal: "p")))
        #expect(execute == .drop)
        let sync = flow.receive(try frame(B.sync))
        #expect(bytes(forwarded(sync)) == B.sync)
        let afterSync = flow.receive(try frame(B.execute(portal: "p")))
        #expect(bytes(forwarded(afterSync)) == B.execute(portal: "p"))
        try expectRefusal(flow.answer(try markerError(marker)), Refusal(code: "26000", message: "prepared statement \"never\" does not exist"))
    }

    @Test func refusedBindSendsAMarkerParseAndDiscardsUntilSync() throws {
        var flow = Self.signedIn("rb")
        _ = flow.receive(try frame(B.parse("del", "DELETE FROM accounts WHERE id = $1")))
        let step = flow.receive(try frame(B.bind(portal: "", statement: "del")))
        #expect(step == .check("DELETE FROM accounts WHERE id = $1"))
        let refusal = Refusal(message: "writes need approval", hint: "gatehouse request prod-db --role write")
        let out = flow.decided(refusal)
        let marker = try parseMarker(out, nonce: "rb")
        let sentBind = try messages(out).contains { message in
            if case .bind = message { return true }
            return false
        }
        #expect(!sentBind, "the Bind is not sent")

        let execute = flow.receive(try frame(B.execute()))
        #expect(execute == .drop, "the refused statement's Execute must not run anything")
        let close = flow.receive(try frame(B.close("P", "")))
        #expect(close == .drop)
        let sync = flow.receive(try frame(B.sync))
        #expect(bytes(forwarded(sync)) == B.sync)

        #expect(flow.answer(try backend(B.parseComplete)) != nil, "the database confirms the statement's Parse")
        try expectRefusal(flow.answer(try markerError(marker)), refusal)
        #expect(flow.preparedCount == 1, "a refused Bind leaves its statement prepared")
    }

    @Test func describeNamesTheUpstreamStatement() throws {
        var flow = Self.signedIn("ds")
        _ = flow.receive(try frame(B.parse("s1", "SELECT 1")))
        let described = try #require(forwarded(flow.receive(try frame(B.describe("S", "s1")))))
        let sent = try B.frontendFrames(described)
        try #require(sent.count == 1)
        #expect(sent[0].message == .describe)
        #expect(B.tail(of: sent[0].bytes, skip: 1, strings: 0) == B.cString("gatehouse_ds_1"))

        let portal = B.describe("P", "p1")
        #expect(bytes(forwarded(flow.receive(try frame(portal)))) == portal, "a portal's Describe passes as it is")

        let unknown = try #require(forwarded(flow.receive(try frame(B.describe("S", "nope")))))
        _ = try parseMarker(unknown, nonce: "ds")
        #expect(flow.receive(try frame(B.execute())) == .drop)
    }

    // MARK: Close and CloseComplete

    @Test func closeOfAStatementRemovesIt() throws {
        var flow = Self.signedIn("cl")
        _ = flow.receive(try frame(B.parse("s1", "SELECT 1")))
        _ = flow.receive(try frame(B.parse("s2", "SELECT 2")))
        #expect(flow.preparedCount == 2)

        let closed = try #require(forwarded(flow.receive(try frame(B.close("S", "s1")))))
        #expect(try messages(closed) == [.close(kind: Self.statementKind, name: "gatehouse_cl_1")])
        #expect(flow.preparedCount == 1)

        // The name is free again: this Parse is forwarded, not refused.
        let reparsed = try #require(forwarded(flow.receive(try frame(B.parse("s1", "SELECT 'new'")))))
        #expect(try messages(reparsed) == [.parse(statement: "gatehouse_cl_3", query: "SELECT 'new'")])
        #expect(flow.preparedCount == 2)
        #expect(flow.receive(try frame(B.bind(statement: "s1"))) == .check("SELECT 'new'"))
        _ = flow.decided(nil)

        // Closing a name never prepared closes nothing on the database.
        let unknown = try #require(forwarded(flow.receive(try frame(B.close("S", "ghost")))))
        #expect(try messages(unknown) == [.close(kind: Self.statementKind, name: "gatehouse_cl_none")])
        #expect(flow.preparedCount == 2)

        // A portal's Close passes as it is.
        let portal = B.close("P", "p1")
        #expect(bytes(forwarded(flow.receive(try frame(portal)))) == portal)
    }

    @Test func replacingTheUnnamedStatementClosesTheOldOneQuietly() throws {
        var flow = Self.signedIn("u7")
        // Cycle 1: a named statement.
        _ = flow.receive(try frame(B.parse("named", "SELECT 0")))
        _ = flow.receive(try frame(B.sync))
        #expect(bytes(flow.answer(try backend(B.parseComplete))) == B.parseComplete)
        #expect(bytes(flow.answer(try backend(B.readyForQuery()))) == B.readyForQuery())

        // Cycle 2: the unnamed statement twice, then the client's own Close.
        let first = try #require(forwarded(flow.receive(try frame(B.parse("", "SELECT 1")))))
        #expect(try messages(first) == [.parse(statement: "gatehouse_u7_2", query: "SELECT 1")], "nothing to close yet")
        let second = try #require(forwarded(flow.receive(try frame(B.parse("", "SELECT 2")))))
        #expect(try messages(second) == [
            .parse(statement: "gatehouse_u7_3", query: "SELECT 2"),
            .close(kind: Self.statementKind, name: "gatehouse_u7_2"),
        ], "the previous unnamed statement is closed after the new Parse")
        let clientClose = try #require(forwarded(flow.receive(try frame(B.close("S", "named")))))
        #expect(try messages(clientClose) == [.close(kind: Self.statementKind, name: "gatehouse_u7_1")])
        _ = flow.receive(try frame(B.sync))
        #expect(flow.preparedCount == 1)

        // The database's answers: the proxy's CloseComplete is swallowed, the client's passes.
        #expect(bytes(flow.answer(try backend(B.parseComplete))) == B.parseComplete)
        #expect(bytes(flow.answer(try backend(B.parseComplete))) == B.parseComplete)
        let own = flow.answer(try backend(B.closeComplete))
        #expect(own == nil, "the CloseComplete for the proxy's own Close is not the client's to see")
        #expect(bytes(flow.answer(try backend(B.closeComplete))) == B.closeComplete)
        #expect(bytes(flow.answer(try backend(B.readyForQuery()))) == B.readyForQuery())

        // Nothing pending any more: a stray CloseComplete passes.
        #expect(bytes(flow.answer(try backend(B.closeComplete))) == B.closeComplete)
    }

    @Test func anErrorForgetsThePendingOwnClosesOfItsCycle() throws {
        var flow = Self.signedIn("er")
        _ = flow.receive(try frame(B.parse("", "SELECT 1")))
        _ = flow.receive(try frame(B.sync))
        _ = flow.answer(try backend(B.parseComplete))
        _ = flow.answer(try backend(B.readyForQuery()))

        // A new unnamed statement that fails: the database discards the proxy's Close after it.
        let replaced = try #require(forwarded(flow.receive(try frame(B.parse("", "SELEC 2")))))
        #expect(try messages(replaced).count == 2)
        _ = flow.receive(try frame(B.sync))
        let syntax = try backend(Wire.error(code: "42601", message: "syntax error at or near \"SELEC\""))
        #expect(bytes(flow.answer(syntax)) == Array(syntax.bytes.readableBytesView))
        #expect(bytes(flow.answer(try backend(B.readyForQuery()))) == B.readyForQuery())

        // The next cycle's CloseComplete answers the client's Close and must reach the client.
        let portal = B.close("P", "cursor")
        #expect(bytes(forwarded(flow.receive(try frame(portal)))) == portal)
        _ = flow.receive(try frame(B.sync))
        let closeComplete = flow.answer(try backend(B.closeComplete))
        #expect(bytes(closeComplete) == B.closeComplete)
        #expect(bytes(flow.answer(try backend(B.readyForQuery()))) == B.readyForQuery())
    }

    @Test func pipelinedCyclesKeepTheirCloseOwners() throws {
        var flow = Self.signedIn("pl")
        // Cycle A: the client's portal Close. Cycle B: a replaced unnamed statement. Cycle C: a Query.
        _ = flow.receive(try frame(B.close("P", "c1")))
        _ = flow.receive(try frame(B.sync))
        _ = flow.receive(try frame(B.parse("", "SELECT 1")))
        _ = flow.receive(try frame(B.parse("", "SELECT 2")))
        _ = flow.receive(try frame(B.sync))
        #expect(flow.receive(try frame(B.query("SELECT 3"))) == .check("SELECT 3"))
        _ = flow.decided(nil)
        _ = flow.receive(try frame(B.close("P", "c2")))
        _ = flow.receive(try frame(B.sync))

        // A
        #expect(bytes(flow.answer(try backend(B.closeComplete))) == B.closeComplete)
        _ = flow.answer(try backend(B.readyForQuery()))
        // B
        _ = flow.answer(try backend(B.parseComplete))
        _ = flow.answer(try backend(B.parseComplete))
        #expect(flow.answer(try backend(B.closeComplete)) == nil)
        _ = flow.answer(try backend(B.readyForQuery()))
        // C
        let rows = B.typed("C", B.cString("SELECT 1"))
        #expect(bytes(flow.answer(try backend(rows))) == rows)
        _ = flow.answer(try backend(B.readyForQuery()))
        // D
        #expect(bytes(flow.answer(try backend(B.closeComplete))) == B.closeComplete)
        _ = flow.answer(try backend(B.readyForQuery()))
    }

    // MARK: other messages

    @Test func functionCallIsRefusedWithAMarkerQuery() throws {
        var flow = Self.signedIn("fc")
        let step = flow.receive(try frame(B.functionCall))
        guard case .refuse(let out, let refusal) = step else {
            Issue.record("expected .refuse, got \(step)")
            return
        }
        #expect(refusal.code == "42501")
        #expect(refusal.message.contains("FunctionCall"))
        let marker = try queryMarker(out, nonce: "fc")
        try expectRefusal(flow.answer(try markerError(marker)), refusal)
    }

    @Test func passwordMessageAfterSignInIsRefused() throws {
        var flow = Self.signedIn("pw")
        let step = flow.receive(try frame(B.password(B.cString("again"))))
        let out = try #require(forwarded(step))
        let marker = try queryMarker(out, nonce: "pw")
        try expectRefusal(flow.answer(try markerError(marker)), Refusal(code: "08P01", message: "unexpected password message after sign-in"))
    }

    @Test func terminateEndsTheSession() throws {
        var flow = Self.signedIn("t")
        #expect(flow.receive(try frame(B.terminate)) == .terminate)
    }

    /// Outside a copy the database ignores copy messages (a driver may abort a COPY the proxy
    /// refused), so they pass; during one, anything but copy messages ends the session (the batches
    /// would no longer pair up).
    @Test func copyMessagesAndACopy() throws {
        var flow = Self.signedIn("cp")
        for message in [B.typed("d", [1, 2, 3]), B.typed("c", []), B.typed("f", B.cString("stop"))] {
            #expect(bytes(forwarded(flow.receive(try frame(message)))) == message)
        }
        #expect(flow.receive(try frame(B.query("COPY t FROM STDIN"))) == .check("COPY t FROM STDIN"))
        _ = flow.decided(nil)
        #expect(flow.route(try backend(B.typed("G", B.join([0], B.int16(1), B.int16(0))))) == .pass, "the stray messages came before the COPY")
        for message in [B.typed("d", [1, 2, 3]), B.flush, B.typed("c", [])] {
            #expect(bytes(forwarded(flow.receive(try frame(message)))) == message)
        }
        var during = Self.signedIn("cd")
        _ = during.receive(try frame(B.query("COPY t FROM STDIN")))
        _ = during.decided(nil)
        _ = during.answer(try backend(B.typed("G", B.join([0], B.int16(1), B.int16(0)))))
        for message in [B.sync, B.query("SELECT 1"), B.parse("", "SELECT 1")] {
            var copying = during
            guard case .violation = copying.receive(try frame(message)) else { Issue.record("\(message) during a copy passed"); return }
        }
    }

    /// asyncpg sends the copy data and CopyDone right after the COPY, without waiting for the
    /// database's CopyInResponse: the copy is over when the proxy hears it began, and the next
    /// statements still pair up (simple protocol, then extended with libpq's two Syncs).
    @Test func copyDataSentBeforeTheCopyBeganIsPartOfIt() throws {
        var flow = Self.signedIn("cb")
        _ = flow.receive(try frame(B.query("COPY t FROM STDIN")))
        _ = flow.decided(nil)
        _ = flow.receive(try frame(B.typed("d", Array("1\n".utf8))))
        _ = flow.receive(try frame(B.typed("c", [])))
        #expect(flow.route(try backend(B.typed("G", B.join([0], B.int16(1), B.int16(0))))) == .pass)
        _ = flow.answer(try backend(B.typed("C", B.cString("COPY 1"))))
        #expect(flow.route(try backend(B.readyForQuery())) == .pass)
        #expect(flow.settled)
        #expect(flow.receive(try frame(B.query("SELECT 1"))) == .check("SELECT 1"), "the copy is over: a Query is a Query again")
        _ = flow.decided(nil)
        #expect(flow.route(try backend(B.readyForQuery())) == .pass)

        _ = flow.receive(try frame(B.parse("", "COPY t FROM STDIN")))
        _ = flow.receive(try frame(B.bind(statement: "")))
        _ = flow.decided(nil)
        _ = flow.receive(try frame(B.execute()))
        _ = flow.receive(try frame(B.sync))
        _ = flow.receive(try frame(B.typed("d", Array("2\n".utf8))))
        _ = flow.receive(try frame(B.typed("c", [])))
        _ = flow.receive(try frame(B.sync))
        for answer in [B.parseComplete, B.bindComplete, B.typed("G", B.join([0], B.int16(1), B.int16(0))), B.typed("C", B.cString("COPY 1"))] {
            #expect(flow.route(try backend(answer)) != .violation(""), "\(answer)")
        }
        #expect(flow.route(try backend(B.readyForQuery())) == .pass)
        #expect(flow.settled, "the Sync sent during the copy ended no batch; the one after CopyDone did")
    }

    /// A statement sent after a COPY and before its data: the database would fail the copy with it.
    @Test func aStatementWaitingWhenTheCopyBeginsEndsTheSession() throws {
        var flow = Self.signedIn("cw")
        _ = flow.receive(try frame(B.query("COPY t FROM STDIN")))
        _ = flow.decided(nil)
        #expect(flow.receive(try frame(B.query("SELECT 'a\\b'"))) == .checkWhenSettled("SELECT 'a\\b'"))
        guard case .violation = flow.route(try backend(B.typed("G", B.join([0], B.int16(1), B.int16(0))))) else {
            Issue.record("CopyInResponse with a statement waiting passed")
            return
        }
    }

    /// A ReadyForQuery for a batch the proxy did not see begin: it no longer knows which settings
    /// hold when, so the session ends rather than go on.
    @Test func aReadyForQueryNobodyAskedForEndsTheSession() throws {
        var flow = Self.signedIn("rq")
        guard case .violation = flow.route(try backend(B.readyForQuery())) else {
            Issue.record("an unexpected ReadyForQuery passed")
            return
        }
    }

    // MARK: known issue

    @Test func aFailedParseDoesNotKeepItsName() throws {
        // PostgreSQL keeps no statement from a Parse that failed, so a client (pgjdbc, pgx) may
        // parse the same name again: the proxy forgets a name whose Parse got an error instead of
        // ParseComplete.
        var flow = Self.signedIn("fp")
        _ = flow.receive(try frame(B.parse("s1", "SELEC 1")))
        _ = flow.receive(try frame(B.sync))
        _ = flow.answer(try backend(Wire.error(code: "42601", message: "syntax error at or near \"SELEC\"")))
        _ = flow.answer(try backend(B.readyForQuery()))
        let retry = flow.receive(try frame(B.parse("s1", "SELECT 1")))
        let sent = try forwarded(retry).map { try messages($0) } ?? []
        #expect(sent == [.parse(statement: "gatehouse_fp_2", query: "SELECT 1")])
    }

    @Test func aParseDiscardedAfterAnEarlierErrorIsForgottenAndAConfirmedOneKept() throws {
        var flow = Self.signedIn("pd")
        _ = flow.receive(try frame(B.parse("ok", "SELECT 1")))
        _ = flow.receive(try frame(B.parse("bad", "SELEC 1")))
        _ = flow.receive(try frame(B.parse("late", "SELECT 2")))
        _ = flow.receive(try frame(B.sync))
        #expect(flow.answer(try backend(B.parseComplete)) != nil)
        _ = flow.answer(try backend(Wire.error(code: "42601", message: "syntax error")))
        _ = flow.answer(try backend(B.readyForQuery()))
        #expect(flow.preparedCount == 1, "only the statement the database confirmed is kept")
        let again = try forwarded(flow.receive(try frame(B.parse("late", "SELECT 2")))).map { try messages($0) } ?? []
        #expect(again.first == .parse(statement: "gatehouse_pd_4", query: "SELECT 2"))
        let duplicate = try forwarded(flow.receive(try frame(B.parse("ok", "SELECT 3")))).map { try messages($0) } ?? []
        #expect(duplicate.first.map { if case .parse("", _) = $0 { true } else { false } } == true, "a confirmed name is still taken")
    }

    /// asyncpg's `prepare()`: Parse, Describe, Flush, then (no Sync) a simple Query, as PostgreSQL
    /// allows: the Query is checked and ends the cycle; its ReadyForQuery ends it.
    @Test func aQueryAfterAnUnfinishedExtendedBatchIsCheckedAndEndsTheCycle() throws {
        var flow = Self.signedIn("qx")
        let parse = try #require(forwarded(flow.receive(try frame(B.parse("stmt", "SELECT 1")))))
        #expect(try messages(parse).first == .parse(statement: "gatehouse_qx_1", query: "SELECT 1"))
        _ = flow.receive(try frame(B.describe("S", "stmt")))
        #expect(bytes(forwarded(flow.receive(try frame(B.flush)))) == B.flush)
        #expect(flow.receive(try frame(B.query("BEGIN"))) == .check("BEGIN"))
        #expect(bytes(flow.decided(nil)) == B.query("BEGIN"))
        // The database answers the batch, then the Query.
        _ = flow.answer(try backend(B.parseComplete))
        _ = flow.answer(try backend(B.typed("t", B.int16(0))))
        _ = flow.answer(try backend(B.typed("T", B.int16(0))))
        let begin = B.typed("C", B.cString("BEGIN"))
        #expect(bytes(flow.answer(try backend(begin))) == begin)
        _ = flow.answer(try backend(B.readyForQuery("T")))
        // The statement stays prepared and usable; a later cycle's Closes keep their owners.
        #expect(flow.receive(try frame(B.bind(statement: "stmt"))) == .check("SELECT 1"))
        _ = flow.decided(nil)
        _ = flow.receive(try frame(B.close("P", "")))
        _ = flow.receive(try frame(B.sync))
        _ = flow.answer(try backend(B.typed("2", [])))
        #expect(bytes(flow.answer(try backend(B.closeComplete))) == B.closeComplete)
        _ = flow.answer(try backend(B.readyForQuery("T")))
        #expect(flow.preparedCount == 1)
    }

    /// A refused Query after an unfinished batch is refused as any Query is, in order.
    @Test func aRefusedQueryAfterAnUnfinishedBatchIsAnsweredInOrder() throws {
        var flow = Self.signedIn("qr")
        _ = flow.receive(try frame(B.parse("", "SELECT 1")))
        _ = flow.receive(try frame(B.flush))
        #expect(flow.receive(try frame(B.query("DROP TABLE t"))) == .check("DROP TABLE t"))
        let marker = try queryMarker(flow.decided(Refusal(message: "no")), nonce: "qr")
        _ = flow.answer(try backend(B.parseComplete))
        let error = flow.answer(try backend(Wire.error(code: "22P02", message: "invalid input syntax for type integer: \"\(marker)\"")))
        #expect(try B.errorFields(try #require(error))?["M"] == "no")
        _ = flow.answer(try backend(B.readyForQuery()))
    }

    /// An error in the batch makes the database skip the Query (and all else) up to the Sync: one
    /// ReadyForQuery comes, and the cycles after it still pair up with theirs.
    @Test func anErrorInTheBatchSkipsTheQueryUntilSync() throws {
        var flow = Self.signedIn("qe")
        _ = flow.receive(try frame(B.parse("bad", "SELEC 1")))
        _ = flow.receive(try frame(B.flush))
        #expect(flow.receive(try frame(B.query("SELECT 2"))) == .check("SELECT 2"))
        _ = flow.decided(nil)
        let syntax = try backend(Wire.error(code: "42601", message: "syntax error at or near \"SELEC\""))
        #expect(bytes(flow.answer(syntax)) == Array(syntax.bytes.readableBytesView))
        // What the client sends before its Sync is skipped by the database, and by the proxy.
        #expect(flow.receive(try frame(B.query("SELECT 3"))) == .drop)
        _ = flow.receive(try frame(B.sync))
        _ = flow.answer(try backend(B.readyForQuery()))
        // The failed Parse never happened: its name is free, and the next cycle's own Close is dropped.
        _ = flow.receive(try frame(B.parse("bad", "SELECT 4")))
        _ = flow.receive(try frame(B.parse("", "SELECT 5")))
        _ = flow.receive(try frame(B.parse("", "SELECT 6")))
        _ = flow.receive(try frame(B.sync))
        for _ in 0..<3 { _ = flow.answer(try backend(B.parseComplete)) }
        #expect(flow.answer(try backend(B.closeComplete)) == nil, "the proxy's own Close")
        _ = flow.answer(try backend(B.readyForQuery()))
        #expect(flow.preparedCount == 2)
    }

    /// The batch's error arrives while the Query after it is being checked: the Query is not sent (the
    /// database would skip it), and the cycles still pair up with the ReadyForQuery of the Sync.
    @Test func anErrorDuringTheCheckOfTheQueryAfterABatch() throws {
        var flow = Self.signedIn("qc")
        _ = flow.receive(try frame(B.parse("bad", "SELEC 1")))
        _ = flow.receive(try frame(B.flush))
        #expect(flow.receive(try frame(B.query("SELECT 2"))) == .check("SELECT 2"))
        _ = flow.answer(try backend(Wire.error(code: "42601", message: "syntax error at or near \"SELEC\"")))
        #expect(flow.decided(nil).readableBytes == 0, "nothing is sent for a Query the database would skip")
        _ = flow.receive(try frame(B.sync))
        _ = flow.answer(try backend(B.readyForQuery()))
        // A later simple Query's own error is not taken for a batch error: the next Query is sent.
        #expect(flow.receive(try frame(B.query("SELECT 1/0"))) == .check("SELECT 1/0"))
        _ = flow.decided(nil)
        _ = flow.answer(try backend(Wire.error(code: "22012", message: "division by zero")))
        _ = flow.answer(try backend(B.readyForQuery()))
        #expect(flow.receive(try frame(B.query("SELECT 3"))) == .check("SELECT 3"))
        #expect(bytes(flow.decided(nil)) == B.query("SELECT 3"))
    }

    // MARK: copy in with the extended protocol

    /// libpq's COPY FROM STDIN through PQexecParams: Parse, Bind, Execute, Sync; then the data,
    /// CopyDone and another Sync. The database is copying in when the first Sync arrives and ignores
    /// it: the two Syncs end one cycle, and the next cycle's own Close is still the proxy's.
    @Test func copyInWithTheExtendedProtocolIsOneCycle() throws {
        var flow = Self.signedIn("ci")
        _ = flow.receive(try frame(B.parse("", "COPY t FROM STDIN")))
        #expect(flow.receive(try frame(B.bind(statement: ""))) == .check("COPY t FROM STDIN"))
        _ = flow.decided(nil)
        _ = flow.receive(try frame(B.execute()))
        _ = flow.receive(try frame(B.sync))
        _ = flow.answer(try backend(B.parseComplete))
        _ = flow.answer(try backend(B.bindComplete))
        let copyIn = B.typed("G", B.join([0], B.int16(1), B.int16(0)))
        #expect(bytes(flow.answer(try backend(copyIn))) == copyIn)
        #expect(!flow.settled)
        _ = flow.receive(try frame(B.typed("d", Array("1\n".utf8))))
        _ = flow.receive(try frame(B.typed("c", [])))
        _ = flow.receive(try frame(B.sync))
        _ = flow.answer(try backend(B.typed("C", B.cString("COPY 1"))))
        _ = flow.answer(try backend(B.readyForQuery()))
        #expect(flow.settled, "one ReadyForQuery ends the copy's cycle")
        _ = flow.receive(try frame(B.parse("", "SELECT 1")))
        _ = flow.receive(try frame(B.sync))
        _ = flow.answer(try backend(B.parseComplete))
        #expect(flow.answer(try backend(B.closeComplete)) == nil, "the proxy's own Close of the COPY's statement")
        _ = flow.answer(try backend(B.readyForQuery()))
        #expect(flow.settled)
    }

    /// A copy in that fails ends at the client's Sync as any error does; a Sync after it counts again.
    @Test func aFailedCopyInEndsItsCycleAtTheSync() throws {
        var flow = Self.signedIn("cf")
        _ = flow.receive(try frame(B.parse("", "COPY t FROM STDIN")))
        _ = flow.receive(try frame(B.bind(statement: "")))
        _ = flow.decided(nil)
        _ = flow.receive(try frame(B.execute()))
        _ = flow.receive(try frame(B.sync))
        _ = flow.answer(try backend(B.parseComplete))
        _ = flow.answer(try backend(B.bindComplete))
        _ = flow.answer(try backend(B.typed("G", B.join([0], B.int16(1), B.int16(0)))))
        _ = flow.receive(try frame(B.typed("d", Array("x\n".utf8))))
        _ = flow.answer(try backend(Wire.error(code: "22P02", message: "invalid input syntax for type integer: \"x\"")))
        _ = flow.receive(try frame(B.typed("c", [])))
        _ = flow.receive(try frame(B.sync))
        _ = flow.answer(try backend(B.readyForQuery()))
        #expect(flow.settled)
        #expect(flow.receive(try frame(B.query("SELECT 2"))) == .check("SELECT 2"))
    }

    // MARK: statements that read differently under other settings

    @Test("which texts could read differently", arguments: [
        ("SELECT 1", false), ("SELECT 'a''b'", false), ("SELECT 'Müller'", true), ("SELECT 'é'", true), ("SELECT 'é ok'", true),
        ("SELECT 'a\\'' OR true --'", true), ("SELECT E'\\n'", true), ("SELECT 'ā\\x'", true), ("SELECT '日本'", true), ("SELECT $$x$$ -- ~@^|", false),
        ("SELECT 'é1'", true), ("SELECT \"naïve\"", true), ("SELECT 'ü;'", true), ("SELECT 'ü/'", true),
    ])
    func readsDependOnSettings(text: String, expected: Bool) {
        #expect(StatementFlow.readsDependOnSettings(text) == expected, "\(text)")
    }

    /// A simple Query sent before the database has answered the one ahead of it, with a text that
    /// could read differently if that one changed a setting: checked only once the database has
    /// answered (and reported any change of setting); other texts are checked at once.
    @Test func aQueryThatDependsOnSettingsWaitsForTheOneAhead() throws {
        var flow = Self.signedIn("hq")
        #expect(flow.settled)
        #expect(flow.receive(try frame(B.query("SELECT f()"))) == .check("SELECT f()"))
        _ = flow.decided(nil)
        #expect(!flow.settled)
        #expect(flow.receive(try frame(B.query("SELECT 2"))) == .check("SELECT 2"))
        _ = flow.decided(nil)
        let sensitive = "SELECT 'a\\'' OR true --'"
        #expect(flow.receive(try frame(B.query(sensitive))) == .checkWhenSettled(sensitive))
        _ = flow.answer(try backend(B.readyForQuery()))
        #expect(!flow.settled, "SELECT 2 is still running")
        _ = flow.answer(try backend(B.readyForQuery()))
        #expect(flow.settled)
        #expect(bytes(flow.decided(nil)) == B.query(sensitive))
    }

    /// Within one batch the database reports changed settings only at its end. A Parse whose text reads differently
    /// under other settings, sent after an Execute of the same batch, goes to the database behind the proxy's own
    /// check of the settings (whose answers the client never sees); a Bind is judged as any other (its text was read
    /// at its Parse). When the check fails, the client gets the proxy's refusal and the batch is discarded to its Sync.
    @Test func aTextThatDependsOnSettingsAfterAnExecuteInTheSameBatchIsReadBehindACheckOfTheSettings() throws {
        var flow = Self.signedIn("hb")
        #expect(try messages(try #require(forwarded(flow.receive(try frame(B.parse("f", "SELECT f()")))))).count == 1)
        _ = flow.receive(try frame(B.parse("before", "SELECT E'\\n'")))
        #expect(flow.receive(try frame(B.bind(statement: "f"))) == .check("SELECT f()"))
        _ = flow.decided(nil)
        _ = flow.receive(try frame(B.execute()))
        let sent = try messages(try #require(forwarded(flow.receive(try frame(B.parse("after", "SELECT E'\\t'"))))))
        try #require(sent.count == 5, "\(sent)")
        guard case .parse("", let check) = sent[0], case .bind = sent[1], case .execute = sent[2], case .close = sent[3],
              case .parse(let name, "SELECT E'\\t'") = sent[4] else {
            Issue.record("expected the check of the settings, then the client's Parse: \(sent)")
            return
        }
        #expect(check.contains("current_setting('standard_conforming_strings')") && check.contains("gatehouse-refused-hb-0"), "\(check)")
        #expect(name.hasPrefix("gatehouse_hb_"))
        // Both statements are judged at their Bind, at once.
        #expect(flow.receive(try frame(B.bind(statement: "before"))) == .check("SELECT E'\\n'"))
        _ = flow.decided(nil)
        _ = flow.receive(try frame(B.execute()))
        #expect(flow.receive(try frame(B.bind(statement: "after"))) == .check("SELECT E'\\t'"))
        _ = flow.decided(nil)
        _ = flow.receive(try frame(B.execute()))
        _ = flow.receive(try frame(B.sync))
        // The database's answers, in order: the proxy's own are dropped, the client's pass.
        let commandComplete = B.typed("C", B.cString("SELECT 1"))
        let dataRow = B.typed("D", B.join(B.int16(1), B.int32(1), Array("1".utf8)))
        let answers: [([UInt8], Bool)] = [
            (B.parseComplete, true), (B.parseComplete, true), (B.bindComplete, true), (commandComplete, true),
            (B.parseComplete, false), (B.bindComplete, false), (dataRow, false), (commandComplete, false), (B.closeComplete, false),
            (B.parseComplete, true), (B.bindComplete, true), (commandComplete, true), (B.bindComplete, true), (commandComplete, true),
        ]
        for (index, (answer, passes)) in answers.enumerated() {
            #expect((flow.answer(try backend(answer)) != nil) == passes, "answer \(index)")
        }
        #expect(flow.answer(try backend(B.readyForQuery())) != nil)
        #expect(flow.settled)

        // The check fails (a function of the batch turned standard_conforming_strings off): the client sees the
        // proxy's refusal for its Parse, and what it sends until its Sync is discarded, as after any error.
        _ = flow.receive(try frame(B.bind(statement: "f")))
        _ = flow.decided(nil)
        _ = flow.receive(try frame(B.execute()))
        #expect(try messages(try #require(forwarded(flow.receive(try frame(B.parse("later", "SELECT 'ü'")))))).count == 5)
        #expect(flow.receive(try frame(B.bind(statement: "later"))) == .check("SELECT 'ü'"))
        _ = flow.decided(nil)
        for answer in [B.bindComplete, commandComplete] { #expect(flow.answer(try backend(answer)) != nil) }
        for answer in [B.parseComplete, B.bindComplete] { #expect(flow.answer(try backend(answer)) == nil, "the check's own answers") }
        try expectRefusal(flow.answer(try markerError("gatehouse-refused-hb-0")), StatementFlow.settingsChanged)
        #expect(flow.receive(try frame(B.execute())) == .drop)
        _ = flow.receive(try frame(B.sync))
        #expect(flow.answer(try backend(B.readyForQuery())) != nil)
        #expect(flow.settled)
    }

    /// A text read while only batches before its own may still run goes without the check (which would put a
    /// statement ahead of it in its transaction: VACUUM could no longer run there); its Bind waits for them, and is
    /// refused when its own batch has run a statement since (that cannot be waited for).
    @Test func aTextReadWhileAnEarlierBatchRunsWaitsAtItsBind() throws {
        var flow = Self.signedIn("eb")
        _ = flow.receive(try frame(B.parse("f", "SELECT f()")))
        try run(&flow, "f")
        _ = flow.receive(try frame(B.sync))
        let sent = try messages(try #require(forwarded(flow.receive(try frame(B.parse("v", "VACUUM \"tâble\""))))))
        #expect(sent.count == 1, "no check of the settings in a batch that has run nothing: \(sent)")
        #expect(flow.receive(try frame(B.bind(statement: "v"))) == .checkWhenSettled("VACUUM \"tâble\""))
        for answer in [B.parseComplete, B.bindComplete, B.typed("C", B.cString("SELECT 1")), B.readyForQuery()] { _ = flow.answer(try backend(answer)) }
        #expect(flow.settled)
        _ = flow.decided(nil)
        _ = flow.receive(try frame(B.execute()))
        _ = flow.receive(try frame(B.sync))
        for answer in [B.parseComplete, B.bindComplete, B.typed("C", B.cString("VACUUM")), B.readyForQuery()] { _ = flow.answer(try backend(answer)) }
        // Confirmed once: judged at once later, even behind a running statement.
        try run(&flow, "f")
        #expect(flow.receive(try frame(B.bind(statement: "v"))) == .check("VACUUM \"tâble\""))
        _ = flow.decided(nil)
        _ = flow.receive(try frame(B.sync))

        // Parsed while an earlier batch ran, then a statement of its own batch ran before its Bind: refused.
        var other = Self.signedIn("ec")
        _ = other.receive(try frame(B.parse("f", "SELECT f()")))
        try run(&other, "f")
        _ = other.receive(try frame(B.sync))
        _ = other.receive(try frame(B.parse("u", "SELECT 'ü'")))
        try run(&other, "f")
        guard case .refuse(_, let refusal) = other.receive(try frame(B.bind(statement: "u"))) else {
            Issue.record("a text read while an earlier batch ran was bound after a statement of its own batch ran, unrefused")
            return
        }
        #expect(refusal == StatementFlow.unsettledRefusal)
    }

    /// pgjdbc sends `BEGIN` in the same batch as a transaction's first statement: a portal of BEGIN (or
    /// SAVEPOINT, RELEASE, START TRANSACTION) runs no code that could change settings, so the statement after
    /// it is judged at once; an Execute of anything else still is a statement that may run code.
    @Test func aBeginInTheSameBatchRunsNoCode() throws {
        var flow = Self.signedIn("bg")
        for text in ["BEGIN", "begin isolation level repeatable read, read write", "SAVEPOINT s1", "RELEASE SAVEPOINT s1", "START TRANSACTION;"] {
            #expect(StatementFlow.runsNoCode(text), "\(text)")
        }
        for text in ["BEGIN; SELECT f()", "SELECT f()", "COMMIT", "SAVEPOINT \"x\"", "BEGINNING", "RELEASE"] {
            #expect(!StatementFlow.runsNoCode(text), "\(text)")
        }
        _ = flow.receive(try frame(B.parse("", "BEGIN")))
        #expect(flow.receive(try frame(B.bind(statement: ""))) == .check("BEGIN"))
        _ = flow.decided(nil)
        _ = flow.receive(try frame(B.execute()))
        let text = "SELECT 'café'"
        let quiet = try messages(try #require(forwarded(flow.receive(try frame(B.parse("", text))))))
        guard case .parse(_, text) = quiet.first else {
            Issue.record("the text after BEGIN's portal went behind a check of the settings: \(quiet)")
            return
        }
        #expect(flow.receive(try frame(B.bind(statement: ""))) == .check(text))
        _ = flow.decided(nil)
        _ = flow.receive(try frame(B.execute()))
        // After that Execute, a settings-dependent text in the same batch goes behind the check of the settings.
        let behind = try messages(try #require(forwarded(flow.receive(try frame(B.parse("", "SELECT 'über'"))))))
        #expect(behind.count >= 5, "\(behind)")

        // Only the unnamed portal, only for its next Execute: a named portal (SQL cursors share the names) bound to
        // BEGIN, or the unnamed one closed and bound again, runs as any other.
        for steps in [[B.parse("b", "BEGIN"), B.bind(portal: "c", statement: "b"), B.execute(portal: "c")],
                      [B.parse("b", "BEGIN"), B.bind(statement: "b"), B.close("P", ""), B.execute()],
                      [B.parse("b", "BEGIN"), B.bind(statement: "b"), B.execute(), B.execute()]] {
            var flow = Self.signedIn("bq")
            for step in steps {
                switch flow.receive(try frame(step)) {
                case .check: _ = flow.decided(nil)
                default: break
                }
            }
            let sent = try messages(try #require(forwarded(flow.receive(try frame(B.parse("after", "SELECT 'über'"))))))
            #expect(sent.count == 5, "a settings-dependent text after \(steps.count) steps went without the check of the settings: \(sent)")
        }
    }

    /// psycopg removes prepared statements with SQL: `DEALLOCATE name` goes to the database with the
    /// database's name of that statement, and the proxy forgets it when it runs; `DEALLOCATE ALL` and
    /// `DISCARD ALL` forget every named statement (not the unnamed one).
    @Test func deallocateWithSQLNamesTheDatabasesStatementAndIsForgotten() throws {
        for (text, name, all) in [("DEALLOCATE _pg3_0", "_pg3_0", false), ("deallocate prepare \"Mixed Case\";", "Mixed Case", false),
                                  ("DEALLOCATE PG3", "pg3", false), ("DEALLOCATE ALL", nil, true), ("  discard ALL ; ", nil, true)] as [(String, String?, Bool)] {
            let read = StatementFlow.Deallocation.read(text)
            #expect(read?.name == name && read?.all == all, "\(text)")
        }
        for text in ["DEALLOCATE", "DEALLOCATE a b", "DEALLOCATE \"\"", "DEALLOCATE x; SELECT 1", "DISCARD PLANS", "-- c\nDEALLOCATE x"] {
            #expect(StatementFlow.Deallocation.read(text) == nil, "\(text)")
        }
        var flow = Self.signedIn("da")
        for name in ["_pg3_0", "_pg3_1", "keep"] {
            guard case .forward = flow.receive(try frame(B.parse(name, "SELECT 1"))) else { Issue.record("not forwarded"); return }
        }
        #expect(flow.preparedCount == 3)
        // psycopg: the unnamed statement, run with the extended protocol.
        guard let parse = forwarded(flow.receive(try frame(B.parse("", "DEALLOCATE _pg3_0")))),
              case .parse(_, let sent) = try messages(parse).first else { Issue.record("the Parse was not forwarded"); return }
        #expect(sent.hasPrefix("DEALLOCATE \"gatehouse_da_") && sent.hasSuffix("\""), "\(sent)")
        #expect(flow.preparedCount == 4, "nothing is forgotten before it is allowed to run")
        #expect(flow.receive(try frame(B.bind(statement: ""))) == .check("DEALLOCATE _pg3_0"))
        _ = flow.decided(nil)
        #expect(flow.preparedCount == 3)
        guard case .forward(let refused) = flow.receive(try frame(B.bind(statement: "_pg3_0"))) else { Issue.record("no answer"); return }
        #expect(try messages(refused).contains { if case .parse = $0 { return true } else { return false } }, "a Bind of the removed name is refused")
        _ = flow.receive(try frame(B.sync))
        // A simple Query: the text sent names the database's statement.
        var flow2 = Self.signedIn("db")
        _ = flow2.receive(try frame(B.parse("s1", "SELECT 1")))
        #expect(flow2.receive(try frame(B.query("DEALLOCATE s1"))) == .check("DEALLOCATE s1"))
        guard case .query(let text) = try messages(flow2.decided(nil)).first else { Issue.record("no Query sent"); return }
        #expect(text.hasPrefix("DEALLOCATE \"gatehouse_db_"), "\(text)")
        #expect(flow2.preparedCount == 0)
        // A name the proxy does not know (SQL's PREPARE) goes as written; ALL forgets every named statement.
        #expect(flow2.receive(try frame(B.query("DEALLOCATE sqlside"))) == .check("DEALLOCATE sqlside"))
        #expect(try messages(flow2.decided(nil)).first == .query("DEALLOCATE sqlside"))
        _ = flow2.receive(try frame(B.parse("a", "SELECT 1")))
        _ = flow2.receive(try frame(B.parse("", "SELECT 2")))
        #expect(flow2.preparedCount == 2)
        #expect(flow2.receive(try frame(B.query("DISCARD ALL"))) == .check("DISCARD ALL"))
        _ = flow2.decided(nil)
        #expect(flow2.preparedCount == 0, "the unnamed statement goes too: on the database it is a named statement of the proxy's")
        #expect(StatementFlow.Deallocation.read("DEALLOCATE\u{A0}ALL") == nil, "a no-break space is not a blank to PostgreSQL")
    }

    /// A Bind's values as the guard reads them: text, NULL, binary UTF-8 as text, other binary opaque; and a
    /// pattern parameter written into the text as a constant for the guard to judge.
    @Test func boundValuesAreReadAndWrittenIn() throws {
        let tail = B.join(B.int16(2), B.int16(0), B.int16(1), B.int16(4), B.int32(1), Array("%".utf8), B.int32(-1),
                          B.int32(3), Array("a'b".utf8), B.int32(2), [0xFF, 0x00], B.int16(0))
        let bind = ByteBuffer(bytes: B.bind(statement: "s", tail: tail))
        #expect(StatementFlow.boundValues(of: bind) == [.text("%"), .null, .text("a'b"), .opaque])
        #expect(StatementFlow.boundValues(of: ByteBuffer(bytes: [UInt8(ascii: "B"), 0, 0, 0, 6, 0])) == nil)
        let text = "DELETE FROM t WHERE v LIKE $1 OR w ~ $12"
        let uses = [PatternParameter(number: 1, location: 27), PatternParameter(number: 12, location: 37)]
        #expect(BoundValues.substitute(text, uses, [.text("%")]) == .init(text: "DELETE FROM t WHERE v LIKE '%' OR w ~ '%'", mayLower: false),
                "a value not bound is read as the widest")
        #expect(BoundValues.substitute(text, [uses[0]], [.text("it's")]) == .init(text: "DELETE FROM t WHERE v LIKE 'it''s' OR w ~ $12", mayLower: true))
        #expect(BoundValues.substitute(text, [PatternParameter(number: 1, location: 26)], [.text("%")]) == nil, "not the parameter there")
        #expect(BoundValues.substitute("SELECT $10", [PatternParameter(number: 1, location: 7)], [.text("%")]) == nil, "$1 is not the start of $10")
        // A declared type is written with the value (the database compares '01' and '1' as int4, equal); a value that
        // is not known exactly (non-ASCII, binary where the type is not a text's, a type not named here) only adds.
        let both = [PatternParameter(number: 1, location: 20, text: false), PatternParameter(number: 2, location: 25, text: false)]
        #expect(BoundValues.substitute("DELETE FROM t WHERE $1 = $2", both, [.text("1", type: 23), .text("01", type: 23)])
                == .init(text: "DELETE FROM t WHERE '1'::pg_catalog.int4 = '01'::pg_catalog.int4", mayLower: true))
        #expect(BoundValues.substitute("DELETE FROM t WHERE $1 = $2", both, [.text("é"), .null])?.mayLower == false)
        #expect(BoundValues.substitute("DELETE FROM t WHERE $1 = $2", both, [.binaryText("1111", type: 0), .null])
                == .init(text: "DELETE FROM t WHERE '%' = NULL", mayLower: false))
        #expect(BoundValues.substitute("DELETE FROM t WHERE $1 = $2", both, [.text("x", type: 99_999), .null])
                == .init(text: "DELETE FROM t WHERE '%' = NULL", mayLower: false))
        #expect(BoundValues.substitute(text, [uses[0]], [.binaryText("ab%", type: 25)]) == .init(text: "DELETE FROM t WHERE v LIKE 'ab%' OR w ~ $12", mayLower: true))
        // The declared types come from the Parse: a binary int4 is its value (the bytes `1111` are 825307441 to the
        // database); a binary value of a text type, UTF-8 without NUL, is that text.
        let typed = B.join(B.int16(1), B.int16(1), B.int16(1), B.int32(4), Array("1111".utf8), B.int16(0))
        #expect(StatementFlow.boundValues(of: ByteBuffer(bytes: B.bind(statement: "s", tail: typed)), types: [23]) == [.text("825307441", type: 23)])
        #expect(StatementFlow.boundValues(of: ByteBuffer(bytes: B.bind(statement: "s", tail: typed)), types: [25]) == [.binaryText("1111", type: 25)])
        #expect(StatementFlow.binaryValue([0xFF, 0xFF, 0xFF, 0xFB], type: 23) == "-5")
        #expect(StatementFlow.binaryValue([0x01], type: 16) == "t")
        #expect(StatementFlow.binaryValue([0x00, 0x05], type: 23) == nil, "an int4 is four bytes")
    }
}
