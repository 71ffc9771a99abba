import GatehouseCore
import NIOCore

/// Why a statement does not go to the database: the SQLSTATE and words the client sees.
public struct Refusal: Sendable, Equatable {
    public var code: String
    public var message: String
    public var hint: String?

    public init(code: String = "42501", message: String, hint: String? = nil) {
        self.code = code
        self.message = message
        self.hint = hint
    }
}

/// The statement side of a proxied session, after sign-in: which client messages go to the
/// database as they are, which are rewritten, which wait for a decision, and how refusals are
/// answered. A pure state machine; the channel handler does the I/O and asks the authority.
///
/// - Statement names are the proxy's: every Parse gets a fresh name on the database, never reused,
///   so the text a Bind is judged by is exactly the text that statement was prepared from, even
///   when an earlier Parse failed, was discarded after an error, or the client reuses a name.
/// - A statement is judged when it is about to run: a simple Query as a whole, an extended-protocol
///   statement at each Bind (one Bind, one run), so a one-shot approval is used by one run.
/// - A refusal is not answered by the proxy itself but by the database: the proxy sends a statement
///   that always fails (a cast of a marker text to an integer) and swaps the database's error for
///   its own. Answers stay in order with everything in flight, the transaction status the client sees
///   is the database's own, and an open transaction really fails, so it cannot commit with part of
///   its work missing. In the extended protocol the failure comes at a Parse, after which the
///   database discards until Sync, as it does for any error; the proxy drops the client's messages
///   until that Sync as well.
public struct StatementFlow: Sendable {
    public enum Step: Sendable, Equatable {
        /// Send these bytes to the database.
        case forward(ByteBuffer)
        /// Nothing to send (the message was discarded after an error).
        case drop
        /// Ask whether this statement may run, then call `decided`.
        case check(String)
        /// As `check`, but only once everything sent before it has been answered (`settled`): the
        /// statement reads differently under other settings, and a statement still running could
        /// change them (the database reports that at its ReadyForQuery, and the session ends).
        case checkWhenSettled(String)
        /// Send these bytes (a refusal) to the database, and record the refusal.
        case refuse(ByteBuffer, Refusal)
        /// The client said Terminate.
        case terminate
        /// The client broke the protocol in a way that cannot be answered in order: end the session.
        case violation(String)
    }

    private struct Prepared: Sendable {
        var upstreamName: String
        var text: String
        /// The parameter types its Parse declared (OIDs; 0 or none: PostgreSQL infers them).
        var types: [UInt32] = []
        /// The text reads differently under other settings and was read by the database while batches sent before
        /// it may still have been running (not behind the proxy's check): judged once they have answered.
        var readUnsettled = false
        /// The text is `DEALLOCATE` (or `DISCARD ALL`): the prepared statements it removes when it runs,
        /// with the database's name of the one it names (the text sent to the database names that).
        var deallocates: Deallocation?
    }

    /// What the pending check will forward when allowed, and what running it changes here.
    private enum Awaiting: Sendable {
        case query(ByteBuffer, deallocates: Deallocation?)
        case bind(ByteBuffer, statement: String, statementUpstreamName: String, portal: String, runsNoCode: Bool, deallocates: Deallocation?)
    }

    /// Prepared statements removed with SQL (`DEALLOCATE name`, `DEALLOCATE ALL`, `DISCARD ALL`), as psycopg
    /// removes its own: the database's name stands for the client's in the text sent, and the proxy forgets
    /// them too, so its count of the session's statements stays the database's.
    enum Deallocation: Sendable, Equatable {
        /// The client's name and the database's.
        case one(client: String, upstream: String)
        case all

        /// What a whole text removes: `DEALLOCATE [PREPARE] name` (unquoted names are folded to lower
        /// case, as PostgreSQL folds them), `DEALLOCATE [PREPARE] ALL` or `DISCARD ALL`, one statement with
        /// an optional `;`. The name is the client's; nil for any other text (comments included).
        static func read(_ text: String) -> (name: String?, all: Bool)? {
            var rest = trimmed(Substring(text))
            if rest.hasSuffix(";") { rest = trimmed(rest.dropLast()) }
            func keyword(_ word: String) -> Bool {
                guard rest.count >= word.count, rest.prefix(word.count).lowercased() == word else { return false }
                let after = rest.dropFirst(word.count)
                guard after.isEmpty || isBlank(after.first!) else { return false }
                rest = after.drop(while: isBlank)
                return true
            }
            if keyword("discard") { return keyword("all") && rest.isEmpty ? (nil, true) : nil }
            guard keyword("deallocate") else { return nil }
            _ = keyword("prepare")
            if keyword("all") { return rest.isEmpty ? (nil, true) : nil }
            if rest.first == "\"" {
                var name = "", index = rest.index(after: rest.startIndex)
                while index < rest.endIndex {
                    let character = rest[index]
                    index = rest.index(after: index)
                    if character == "\"" {
                        guard index < rest.endIndex, rest[index] == "\"" else {
                            return index == rest.endIndex && !name.isEmpty ? (name, false) : nil
                        }
                        index = rest.index(after: index)
                    }
                    name.append(character)
                }
                return nil
            }
            guard let first = rest.utf8.first, first == UInt8(ascii: "_") || isLetter(first),
                  rest.utf8.allSatisfy({ $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "$") || isLetter($0) || isDigit($0) }) else { return nil }
            return (rest.lowercased(), false)
        }

        /// PostgreSQL's blanks: space, tab, newline, carriage return, form feed (not other Unicode spaces,
        /// which make the text another statement, or none).
        static func isBlank(_ character: Character) -> Bool { [" ", "\t", "\n", "\r", "\u{0C}", "\r\n"].contains(character) }

        static func trimmed(_ text: Substring) -> Substring {
            text.drop(while: isBlank).reversed().drop(while: isBlank).reversed().map { $0 }.reduce(into: Substring()) { $0.append($1) }
        }
        static func isLetter(_ byte: UInt8) -> Bool { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20) }
        static func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }
    }

    /// Whether a text can run no code of the user's (no function, no trigger): a transaction or savepoint
    /// begun or released, in plain words (`BEGIN`, `START TRANSACTION ISOLATION LEVEL ...`, `SAVEPOINT s`,
    /// `RELEASE s`). Drivers send `BEGIN` in the same batch as a transaction's first statement (pgjdbc).
    static func runsNoCode(_ text: String) -> Bool {
        var words = Deallocation.trimmed(Substring(text))
        if words.hasSuffix(";") { words.removeLast() }
        guard words.utf8.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ",")
                                      || Deallocation.isLetter($0) || Deallocation.isDigit($0) }) else { return false }
        let lowered = words.lowercased()
        return ["begin", "start transaction", "savepoint ", "release "].contains { lowered == $0 || lowered.hasPrefix($0.hasSuffix(" ") ? $0 : $0 + " ") }
    }

    let nonce: String
    private var sequence = 0
    private var statements: [String: Prepared] = [:]
    /// The names and texts `statements` holds, in bytes (kept as they change: `keep`, `forget`).
    private var preparedBytes = 0

    private mutating func keep(_ name: String, _ prepared: Prepared) {
        forget(name)
        statements[name] = prepared
        preparedBytes += name.utf8.count + prepared.text.utf8.count
    }

    @discardableResult
    private mutating func forget(_ name: String) -> Prepared? {
        guard let gone = statements.removeValue(forKey: name) else { return nil }
        preparedBytes -= name.utf8.count + gone.text.utf8.count
        return gone
    }
    private var discardingUntilSync = false
    private var awaiting: Awaiting?
    /// The unnamed portal was just bound, in this cycle, to a statement that runs no code (`runsNoCode`), and
    /// not executed yet: its one Execute does not make the cycle busy. Anything else between (another Bind, a
    /// Close, a Sync, a Query, an error) ends it; named portals (SQL cursors share their names) never are.
    private var quietUnnamedPortal = false
    /// Refusals whose marker error has not come back yet, by sequence number.
    private var refusals: [Int: Refusal] = [:]
    /// What the database has still to answer in one cycle (a Sync or a Query, each ending in
    /// ReadyForQuery): for each Close sent, whether it was the proxy's own (its CloseComplete is not
    /// the client's to see); each Parse of a named statement not yet confirmed by ParseComplete.
    private struct Cycle: Sendable {
        var closes: [Bool] = []
        var parses: [(client: String, upstream: String)] = []
        /// Extended-protocol messages were sent in this cycle (it ends at the client's Sync, or at a
        /// simple Query the client sent before its Sync, as PostgreSQL allows).
        var extended = false
        /// Extended-protocol messages of this cycle the database has not completed yet, oldest first, and
        /// whether each is the proxy's own (`settingsCheck`: its answers are not the client's). An error
        /// while any is outstanding makes the database skip everything up to the client's Sync,
        /// a simple Query included.
        private var pending: [Bool] = []
        private var answered = 0
        var outstanding: Int { pending.count - answered }
        /// The oldest message still to be completed is the proxy's own.
        var answeringOwn: Bool { answered < pending.count && pending[answered] }
        mutating func expect(own: Bool = false) { pending.append(own) }
        mutating func complete() {
            guard answered < pending.count else { return }
            answered += 1
            if answered == pending.count { pending.removeAll(keepingCapacity: true); answered = 0 }
        }
        mutating func clearOutstanding() { pending.removeAll(); answered = 0 }
        /// The cycle ends at a simple Query's ReadyForQuery, not at a Sync.
        var endsAtQuery = false
        /// A Bind or Execute went to the database in this cycle: code may be running (a function,
        /// a trigger) that changes settings, which the database reports only at the cycle's end.
        var busy = false
        /// CopyDone or CopyFail messages sent in this cycle after its last Execute or Query, before the
        /// proxy knew a copy had begun (drivers such as asyncpg send the data without waiting for
        /// CopyInResponse): when that run turns out to be a COPY, its copy ended there.
        var copyEndsAfterLastRun = 0

        /// This cycle followed by `next`, as one (the Sync between them was never counted).
        mutating func absorb(_ next: Cycle) {
            closes += next.closes
            parses += next.parses
            extended = extended || next.extended
            pending = Array(pending[answered...]) + next.pending[next.answered...]
            answered = 0
            endsAtQuery = next.endsAtQuery
            busy = busy || next.busy
            copyEndsAfterLastRun += next.copyEndsAfterLastRun
        }
    }

    /// The cycles in flight, oldest first; the last is the open one. The first is the sign-in, which
    /// ends with the database's first ReadyForQuery.
    private var cycles: [Cycle] = [Cycle(), Cycle()]
    private var namesIssued = 0
    /// Where a COPY FROM STDIN stands. While the database copies in (CopyInResponse seen, the
    /// client's CopyDone or CopyFail not yet) it takes only copy messages (and ignores Flush); after
    /// an error during the copy, the client's copy messages still on their way are dropped by it.
    private enum Copy: Sendable { case none, copyingIn, endedByError }
    private var copy = Copy.none

    public init(nonce: String) {
        self.nonce = nonce
    }

    public var preparedCount: Int { statements.count }

    /// The Bind being checked, kept as it came: its values are read only when the guard asks for them.
    private var bindChecked: ByteBuffer?

    /// The values the Bind being checked carries, for the guard to judge a pattern parameter by (`BoundValues`);
    /// nil while no Bind is being checked. Read from the Bind's bytes each time it is asked (on the slow path).
    public var boundValues: [BoundValues.Value]? { bindChecked.map { Self.boundValues(of: $0, types: bindTypes) ?? [] } }
    /// The parameter types declared for the statement of the Bind being checked.
    private var bindTypes: [UInt32] = []
    public var checkingBind: Bool { bindChecked != nil }

    /// A Bind's parameter values: text as it is, NULL, and binary values that are UTF-8 text as text (a text
    /// parameter's binary form is its UTF-8); any other binary value is opaque. Nil when the Bind cannot be read.
    static func boundValues(of bytes: ByteBuffer, types: [UInt32] = []) -> [BoundValues.Value]? {
        var body = bytes
        body.moveReaderIndex(forwardBy: min(5, body.readableBytes))
        guard (try? FrontendDecoder.requiredString(&body, "portal")) != nil, (try? FrontendDecoder.requiredString(&body, "statement")) != nil,
              let formatCount = body.readInteger(as: Int16.self), formatCount >= 0 else { return nil }
        var formats: [Int16] = []
        for _ in 0..<formatCount {
            guard let format = body.readInteger(as: Int16.self) else { return nil }
            formats.append(format)
        }
        guard let count = body.readInteger(as: Int16.self), count >= 0 else { return nil }
        var values: [BoundValues.Value] = []
        for index in 0..<Int(count) {
            guard let length = body.readInteger(as: Int32.self) else { return nil }
            if length < 0 { values.append(.null); continue }
            guard let bytes = body.readBytes(length: Int(length)) else { return nil }
            let binary = (formats.count == 1 ? formats[0] : index < formats.count ? formats[index] : 0) == 1
            let type = index < types.count ? types[index] : 0
            // Integers and booleans in binary, with their types declared (psycopg sends numbers so): their value in words.
            if binary, let number = Self.binaryValue(bytes, type: type) {
                values.append(.text(number, type: type))
                continue
            }
            guard let text = String(validating: bytes, as: UTF8.self), !(binary && bytes.contains(0)) else {
                values.append(.opaque)
                continue
            }
            values.append(binary ? .binaryText(text, type: type) : .text(text, type: type))
        }
        return values
    }

    /// A binary int2, int4, int8 or bool of its declared type as PostgreSQL writes it (`5`, `t`); nil for anything else.
    static func binaryValue(_ bytes: [UInt8], type: UInt32) -> String? {
        func integer<T: FixedWidthInteger & SignedInteger>(_: T.Type) -> String? {
            guard bytes.count == T.bitWidth / 8 else { return nil }
            return String(bytes.reduce(T.zero) { ($0 << 8) | T(truncatingIfNeeded: $1) })
        }
        switch type {
        case 21: return integer(Int16.self)
        case 23: return integer(Int32.self)
        case 20: return integer(Int64.self)
        case 16: return bytes.count == 1 ? (bytes[0] == 0 ? "f" : "t") : nil
        default: return nil
        }
    }

    /// Everything sent to the database has been answered up to the open cycle, and nothing in the
    /// open cycle can have run code: the settings the database last reported are the ones in force.
    public var settled: Bool { cycles.count == 1 && !cycles[0].busy }

    /// Whether the database could read `text` differently from the classifier under settings a
    /// statement could change from inside a function: a backslash (with standard_conforming_strings
    /// off it is an escape in every string), or any non-ASCII byte (in another client encoding the
    /// bytes are other characters: the client-only multi-byte encodings, SJIS, BIG5, GBK, UHC,
    /// GB18030, JOHAB, can even swallow the ASCII byte after one). ASCII text without a backslash
    /// reads alike under every encoding PostgreSQL accepts from a client and either value of
    /// standard_conforming_strings.
    public static func readsDependOnSettings(_ text: String) -> Bool {
        text.utf8.contains { $0 == UInt8(ascii: "\\") || $0 >= 0x80 }
    }

    /// What the client is told when the proxy's check of the settings failed before its statement: a statement
    /// earlier in the batch changed them (from inside a function), and the database would read this one otherwise.
    static let settingsChanged = Refusal(
        code: "0A000",
        message: "gatehouse: a statement earlier in this batch changed standard_conforming_strings or client_encoding, and this statement has a backslash or a non-ASCII character the database would now read differently; it was not run",
        hint: "leave those settings as they are (the session ends when the database reports them changed)")

    /// The proxy's own check, sent just before the Parse of a text whose reading depends on the settings while
    /// statements sent before it may still be running: a statement on the database's unnamed statement (the
    /// client's statements all have names of the proxy's there) run through a portal of the proxy's, which fails
    /// with the marker of refusal 0 unless the settings are the ones the guard reads every text under. Nothing
    /// runs between it and the Parse, so the text is read under the settings it checked; its answers are dropped.
    private mutating func settingsCheck() -> ByteBuffer {
        let portal = "gatehouse_\(nonce)_settings"
        let check = """
            SELECT CAST(CASE WHEN pg_catalog.current_setting('standard_conforming_strings') OPERATOR(pg_catalog.=) 'on' \
            AND pg_catalog.current_setting('client_encoding') OPERATOR(pg_catalog.=) 'UTF8' THEN '1' \
            ELSE '\(markerText(0))' END AS pg_catalog.int4)
            """
        var out = Wire.parse(statement: "", query: check)
        out.writeImmutableBuffer(Wire.message(UInt8(ascii: "B")) { buffer in
            Wire.writeCString(portal, to: &buffer)
            Wire.writeCString("", to: &buffer)
            buffer.writeInteger(Int16(0))
            buffer.writeInteger(Int16(0))
            buffer.writeInteger(Int16(0))
        })
        out.writeImmutableBuffer(Wire.message(UInt8(ascii: "E")) { buffer in
            Wire.writeCString(portal, to: &buffer)
            buffer.writeInteger(Int32(0))
        })
        out.writeImmutableBuffer(Wire.message(UInt8(ascii: "C")) { buffer in
            buffer.writeInteger(UInt8(ascii: "P"))
            Wire.writeCString(portal, to: &buffer)
        })
        cycles[cycles.count - 1].extended = true
        for _ in 0..<4 { cycles[cycles.count - 1].expect(own: true) }
        return out
    }

    /// The refusal for a statement the database would read after code of the same cycle ran.
    static let unsettledRefusal = Refusal(
        code: "0A000",
        message: "gatehouse: this statement was sent in the same batch as a statement still running, and it has a backslash or a non-ASCII character the database would read differently if that statement changed standard_conforming_strings or client_encoding",
        hint: "send a Sync (end the batch) or wait for the previous result before this statement, or pass the text as a parameter")

    // MARK: client to database

    public mutating func receive(_ frame: FrontendFrame) -> Step {
        precondition(awaiting == nil, "a statement is being checked; wait for `decided` before the next message")
        // Copy messages belong to a copy the database has started; during one, nothing else does
        // (the database would fail the copy, and the batches would no longer pair up).
        switch (frame.message, copy) {
        case (.copyData, .none):
            // Outside a copy the database ignores it; or the copy has not been answered yet.
            return .forward(frame.bytes)
        case (.copyDone, .none), (.copyFail, .none):
            // Ignored by the database outside a copy (a driver may abort a COPY the proxy refused), or
            // the end of a copy whose CopyInResponse has not arrived yet: `startCopyIn` tells which.
            cycles[cycles.count - 1].copyEndsAfterLastRun += 1
            return .forward(frame.bytes)
        case (.copyData, _), (.flush, .copyingIn):
            return .forward(frame.bytes)
        case (.copyDone, _), (.copyFail, _):
            copy = .none
            return .forward(frame.bytes)
        case (.terminate, _):
            return .terminate
        case (_, .copyingIn):
            return .violation("a message other than CopyData, CopyDone or CopyFail was sent during COPY FROM STDIN")
        case (_, .endedByError):
            // The client has moved on from its failed copy.
            copy = .none
        default:
            break
        }
        switch frame.message {
        case .query(let text):
            // After an error in an unfinished batch the database skips the Query too, until Sync.
            if discardingUntilSync { return .drop }
            quietUnnamedPortal = false
            let (bytes, deallocates) = deallocation(in: text).map { (Wire.query($0.text), $0.deallocates) } ?? (frame.bytes, nil)
            if Self.readsDependOnSettings(text), !settled {
                if cycles[cycles.count - 1].busy { return .refuse(refuseSimple(Self.unsettledRefusal), Self.unsettledRefusal) }
                awaiting = .query(bytes, deallocates: deallocates)
                return .checkWhenSettled(text)
            }
            awaiting = .query(bytes, deallocates: deallocates)
            return .check(text)
        case .functionCall:
            if discardingUntilSync { return .drop }
            let refusal = Refusal(message: "Gatehouse refuses FunctionCall messages: call the function in a SQL statement so it can be checked")
            return .refuse(refuseSimple(refusal), refusal)
        case .parse(let name, let query):
            if discardingUntilSync { return .drop }
            if !name.isEmpty, statements[name] != nil {
                return .forward(refuseExtended(Refusal(code: "42P05", message: "prepared statement \"\(name)\" already exists")))
            }
            // The text is kept until the statement is closed: one no Bind could run is refused at once, and what
            // one session keeps is bounded.
            if query.utf8.count > Self.maximumStatementBytes {
                return .forward(refuseExtended(Refusal(code: "54000", message: "the statement is \(query.utf8.count / 1024) KiB; Gatehouse checks statements of at most \(Self.maximumStatementBytes / 1024) KiB, so it is not prepared")))
            }
            let replaced = name.isEmpty ? statements[""] : nil
            if replaced == nil, statements.count >= Self.maximumPrepared {
                return .forward(refuseExtended(Refusal(code: "54000", message: "this session holds \(Self.maximumPrepared) prepared statements, the most Gatehouse keeps; close some (the protocol's Close message) before preparing more")))
            }
            let kept = preparedBytes + name.utf8.count + query.utf8.count - (replaced.map { $0.text.utf8.count } ?? 0)
            if kept > Self.maximumPreparedBytes {
                return .forward(refuseExtended(Refusal(code: "54000", message: "this session's prepared statements would hold more than \(Self.maximumPreparedBytes >> 20) MiB of names and text; close some (the protocol's Close message) before preparing more")))
            }
            let upstreamName = freshName()
            // Read by the database after a statement of this batch that may have changed how it reads a backslash or a
            // non-ASCII byte: the proxy's check of the settings goes just before (in the batch's own transaction, where
            // a statement already ran). Read while only earlier batches may still run: its Bind waits for them instead
            // (a check would put a statement before it in its transaction: VACUUM could no longer run there).
            let sensitive = Self.readsDependOnSettings(query)
            let checked = sensitive && cycles[cycles.count - 1].busy ? settingsCheck() : nil
            let deallocation = deallocation(in: query)
            var rewritten = Wire.parse(statement: upstreamName, query: deallocation?.text ?? query)
            // Keep the client's parameter types: everything after the two strings.
            var body = frame.bytes
            body.moveReaderIndex(forwardBy: 5 + name.utf8.count + 1 + query.utf8.count + 1)
            var declared = body
            var types: [UInt32] = []
            if let count = declared.readInteger(as: Int16.self), count > 0 {
                for _ in 0..<count { if let type = declared.readInteger(as: UInt32.self) { types.append(type) } }
            }
            rewritten.moveWriterIndex(to: rewritten.writerIndex - 2)
            rewritten.writeImmutableBuffer(body)
            rewritten.setInteger(Int32(rewritten.readableBytes - 1), at: rewritten.readerIndex + 1)
            var out = checked ?? ByteBuffer()
            out.writeImmutableBuffer(rewritten)
            // Every Parse is answered by ParseComplete or an error; until then the name is provisional.
            cycles[cycles.count - 1].parses.append((name, upstreamName))
            cycles[cycles.count - 1].extended = true
            cycles[cycles.count - 1].expect()
            if name.isEmpty, let old = statements[""] {
                // The unnamed statement is replaced: close the old one on the database.
                out.writeImmutableBuffer(closeStatement(old.upstreamName, own: true))
            }
            keep(name, Prepared(upstreamName: upstreamName, text: query, types: types, readUnsettled: sensitive && checked == nil && !settled,
                                deallocates: deallocation?.deallocates))
            return .forward(out)
        case .bind(let portal, let statement):
            if discardingUntilSync { return .drop }
            guard let prepared = statements[statement] else {
                return .forward(refuseExtended(Refusal(code: "26000", message: "prepared statement \"\(statement)\" does not exist")))
            }
            // Its text was read at its Parse, under settings known then or checked just before (`settingsCheck`): what
            // runs meanwhile cannot change how it reads. Read while earlier batches still ran: once they have answered
            // (a setting they changed ends the session), and refused if this batch has run a statement since, which
            // cannot be waited for.
            if prepared.readUnsettled {
                if settled {
                    statements[statement]?.readUnsettled = false
                } else if cycles[cycles.count - 1].busy {
                    return .refuse(refuseExtended(Self.unsettledRefusal), Self.unsettledRefusal)
                }
            }
            let waits = prepared.readUnsettled && !settled
            awaiting = .bind(frame.bytes, statement: statement, statementUpstreamName: prepared.upstreamName, portal: portal,
                             runsNoCode: Self.runsNoCode(prepared.text), deallocates: prepared.deallocates)
            bindChecked = frame.bytes
            bindTypes = prepared.types
            cycles[cycles.count - 1].extended = true
            return waits ? .checkWhenSettled(prepared.text) : .check(prepared.text)
        case .describe:
            if discardingUntilSync { return .drop }
            return .forward(rewriteDescribe(frame.bytes))
        case .close(let kind, let name):
            if discardingUntilSync { return .drop }
            quietUnnamedPortal = false
            if kind == UInt8(ascii: "P") {
                cycles[cycles.count - 1].closes.append(false)
                cycles[cycles.count - 1].extended = true
                cycles[cycles.count - 1].expect()
                return .forward(frame.bytes)
            }
            // Closing an unknown statement is not an error; a name never issued closes nothing.
            let upstreamName = forget(name)?.upstreamName ?? "gatehouse_\(nonce)_none"
            return .forward(closeStatement(upstreamName, own: false))
        case .execute(let portal):
            if discardingUntilSync { return .drop }
            cycles[cycles.count - 1].extended = true
            cycles[cycles.count - 1].expect()
            // The unnamed portal just bound to `BEGIN` or `SAVEPOINT s` runs no code that could change settings.
            if !(portal.isEmpty && quietUnnamedPortal) { cycles[cycles.count - 1].busy = true }
            quietUnnamedPortal = false
            cycles[cycles.count - 1].copyEndsAfterLastRun = 0
            return .forward(frame.bytes)
        case .sync:
            discardingUntilSync = false
            quietUnnamedPortal = false
            cycles.append(Cycle())
            return .forward(frame.bytes)
        case .flush, .copyData, .copyDone, .copyFail:
            return .forward(frame.bytes)
        case .terminate:
            return .terminate
        case .password, .startup, .sslRequest, .gssEncRequest, .cancel:
            // The decoder never yields these after startup except `p`, which has no meaning here.
            return .forward(refuseSimple(Refusal(code: "08P01", message: "unexpected password message after sign-in")))
        }
    }

    /// The authority's answer for the statement `receive` asked about.
    public mutating func decided(_ refusal: Refusal?) -> ByteBuffer {
        guard let pending = awaiting else { preconditionFailure("no statement is being checked") }
        awaiting = nil
        bindChecked = nil
        // An error that came back while this statement was checked made the database skip everything
        // up to the client's Sync: this statement would be skipped too, so it is not sent at all.
        if discardingUntilSync { return ByteBuffer() }
        switch pending {
        case .query(let bytes, let deallocates):
            if let refusal { return refuseSimple(refusal) }
            endCycleAtQuery()
            if let deallocates { apply(deallocates) }
            return bytes
        case .bind(let bytes, let statement, let upstreamName, let portal, let runsNoCode, let deallocates):
            // Judged once the batches ahead of its Parse had answered: its text was read as the guard read it.
            if statements[statement]?.readUnsettled == true, statements[statement]?.upstreamName == upstreamName {
                statements[statement]?.readUnsettled = false
            }
            if let refusal { return refuseExtended(refusal) }
            cycles[cycles.count - 1].expect()
            quietUnnamedPortal = runsNoCode && portal.isEmpty
            if !quietUnnamedPortal { cycles[cycles.count - 1].busy = true }
            if let deallocates { apply(deallocates) }
            return rewriteBind(bytes, statement: upstreamName)
        }
    }

    // MARK: database to client

    public enum Answer: Sendable, Equatable {
        /// The message goes to the client as it is.
        case pass
        /// This goes to the client instead (the proxy's refusal for its marker error).
        case replace(ByteBuffer)
        /// Nothing goes to the client (the CloseComplete of the proxy's own Close).
        case drop
        /// The proxy can no longer pair the database's answers with what was sent: end the session.
        case violation(String)
    }

    /// What the client gets for one message from the database.
    public mutating func route(_ frame: BackendFrame) -> Answer {
        switch frame.message {
        case .errorResponse(let fields):
            // An error ends a copy in (the database drops the rest of the client's copy data).
            if copy == .copyingIn { copy = .endedByError }
            quietUnnamedPortal = false
            // An error in the extended part of a cycle makes the database skip everything up to the
            // client's Sync, simple Queries included: their ReadyForQuery never comes, and the
            // cycles they ended become one that ends at that Sync.
            if cycles[0].outstanding > 0 {
                cycles[0].clearOutstanding()
                while cycles[0].endsAtQuery {
                    if cycles.count == 1 { cycles[0].endsAtQuery = false; break }
                    let skipped = cycles.remove(at: 1)
                    forget(skipped.parses)
                    cycles[0].endsAtQuery = skipped.endsAtQuery
                    cycles[0].extended = cycles[0].extended || skipped.extended
                    cycles[0].copyEndsAfterLastRun += skipped.copyEndsAfterLastRun
                }
                // The client's Sync has not been sent yet: what it sends until then is skipped too.
                if cycles.count == 1 { discardingUntilSync = true }
            }
            // The rest of this cycle is discarded: its Closes get no answer, its Parses never happened.
            cycles[0].closes.removeAll()
            forget(cycles[0].parses)
            cycles[0].parses.removeAll()
            guard let text = fields["M"], let seq = markerSequence(in: text) else { return .pass }
            if seq == 0 { return .replace(Wire.error(code: Self.settingsChanged.code, message: Self.settingsChanged.message, hint: Self.settingsChanged.hint)) }
            guard let refusal = refusals[seq] else { return .pass }
            refusals = refusals.filter { $0.key > seq }
            return .replace(Wire.error(code: refusal.code, message: refusal.message, hint: refusal.hint))
        case .readyForQuery:
            // Every ReadyForQuery ends a cycle the client began; one more than the client began means
            // the proxy has lost track of what the database is answering, and of which settings hold.
            guard cycles.count > 1 else { return .violation("the database answered a batch the proxy did not see begin") }
            cycles.removeFirst()
            return .pass
        case .other(UInt8(ascii: "G")):
            // The client sent something after the COPY before its data: the database would fail it.
            guard awaiting == nil else { return .violation("a statement was sent after COPY FROM STDIN before the copy data") }
            startCopyIn()
            return .pass
        case .closeComplete:
            // The answers to the proxy's own check of the settings are not the client's.
            if cycles[0].answeringOwn { cycles[0].complete(); return .drop }
            completed()
            guard !cycles[0].closes.isEmpty else { return .pass }
            return cycles[0].closes.removeFirst() ? .drop : .pass
        case .parseComplete:
            if cycles[0].answeringOwn { cycles[0].complete(); return .drop }
            completed()
            if !cycles[0].parses.isEmpty { cycles[0].parses.removeFirst() }
            return .pass
        case .other(let type):
            // BindComplete; NoData or RowDescription ending a Describe; CommandComplete,
            // EmptyQueryResponse or PortalSuspended ending an Execute. While extended messages are
            // outstanding these answer them; after that they are the simple Query's.
            if cycles[0].answeringOwn, Self.ownAnswers.contains(type) {
                if Self.completions.contains(type) { cycles[0].complete() }
                return .drop
            }
            if cycles[0].outstanding > 0, Self.completions.contains(type) { completed() }
            return .pass
        default:
            return .pass
        }
    }

    static let completions: Set<UInt8> = Set("2nTCIs".utf8)
    /// What the proxy's own check of the settings is answered with: BindComplete, DataRow, CommandComplete (and
    /// what any Execute may end with). Notices and notifications on the way are the client's.
    static let ownAnswers: Set<UInt8> = Set("2DCIsnT".utf8)

    /// CopyInResponse for the last Execute or Query of the oldest cycle: from there to the client's
    /// CopyDone or CopyFail the database takes copy data and ignores Syncs. The client may have sent
    /// Syncs meanwhile (libpq sends one right after an extended-protocol COPY, and another after
    /// CopyDone), and even the whole copy (asyncpg does not wait for this answer): the cycles those
    /// ignored Syncs ended are one with the next, up to the cycle where the copy ended, or to the open
    /// one when it has not ended yet.
    private mutating func startCopyIn() {
        // A simple Query's cycle ends at its own ReadyForQuery, not at a Sync.
        let first = cycles[0].endsAtQuery ? 1 : 0
        let ending = (first..<cycles.count).first { cycles[$0].copyEndsAfterLastRun > 0 }
        var last = ending ?? cycles.count - 1
        while last > first {
            let next = cycles.remove(at: first + 1)
            cycles[first].absorb(next)
            last -= 1
        }
        cycles[first].copyEndsAfterLastRun = 0
        copy = ending == nil ? .copyingIn : .none
    }

    private mutating func completed() {
        cycles[0].complete()
    }

    /// The text to send for a `DEALLOCATE` or `DISCARD ALL` (the database's name in place of a statement the
    /// proxy renamed), and what it removes when it runs; nil for any other text, and for a name the proxy
    /// does not know (a statement of SQL's PREPARE, or none: the database answers as it would).
    private func deallocation(in text: String) -> (text: String, deallocates: Deallocation)? {
        guard let read = Deallocation.read(text) else { return nil }
        guard let name = read.name else { return (text, .all) }
        guard let prepared = statements[name] else { return nil }
        return ("DEALLOCATE \"\(prepared.upstreamName)\"", .one(client: name, upstream: prepared.upstreamName))
    }

    /// A deallocation allowed to run: the statements it removes are forgotten, the unnamed one too for ALL (on the
    /// database it is a named statement of the proxy's). Forgotten as it goes to the database: when the database
    /// then refuses it (`DISCARD ALL` in a transaction), the statements stay there unreachable, since a Bind of a
    /// name the proxy does not hold is refused, and the names the proxy gives are never given again.
    private mutating func apply(_ deallocation: Deallocation) {
        switch deallocation {
        case .one(let client, let upstream):
            if statements[client]?.upstreamName == upstream { forget(client) }
        case .all:
            for name in Array(statements.keys) { forget(name) }
        }
    }

    /// Parses that never happened on the database: their names are free again.
    private mutating func forget(_ parses: [(client: String, upstream: String)]) {
        for parse in parses where statements[parse.client]?.upstreamName == parse.upstream {
            forget(parse.client)
        }
    }

    /// A simple Query ends the open cycle (extended messages sent before it without a Sync
    /// included): its ReadyForQuery ends it.
    private mutating func endCycleAtQuery() {
        cycles[cycles.count - 1].endsAtQuery = true
        cycles[cycles.count - 1].copyEndsAfterLastRun = 0
        cycles.append(Cycle())
    }

    /// `route` as the bytes the client gets (nil for none).
    public mutating func answer(_ frame: BackendFrame) -> ByteBuffer? {
        switch route(frame) {
        case .pass: frame.bytes
        case .replace(let bytes): bytes
        case .drop, .violation: nil
        }
    }

    // MARK: pieces

    private mutating func freshName() -> String {
        namesIssued += 1
        return "gatehouse_\(nonce)_\(namesIssued)"
    }

    /// The marker statement for refusal `seq`: it always fails, at parse analysis.
    private func marker(_ seq: Int) -> String {
        "SELECT '\(markerText(seq))'::pg_catalog.int4"
    }

    /// The text a refusal's error carries: refusal `seq` of this session (0: the check of the settings).
    private func markerText(_ seq: Int) -> String { "gatehouse-refused-\(nonce)-\(seq)" }

    private func markerSequence(in text: String) -> Int? {
        guard let range = text.range(of: "gatehouse-refused-\(nonce)-") else { return nil }
        return Int(text[range.upperBound...].prefix { $0.isNumber })
    }

    private mutating func remember(_ refusal: Refusal) -> Int {
        // A marker error that never comes back (the transaction had already failed) leaves its entry
        // behind; keep only the newest.
        if refusals.count >= 256, let oldest = refusals.keys.min() { refusals[oldest] = nil }
        sequence += 1
        refusals[sequence] = refusal
        return sequence
    }

    /// The longest statement text checked: the API's action texts' limit.
    static let maximumStatementBytes = Action.maximumBytes
    /// All the prepared statements' names and texts one session keeps, and how many (pgjdbc's cache, by default,
    /// keeps 256 statements and 5 MiB).
    static let maximumPreparedBytes = 16 << 20
    static let maximumPrepared = 10_000

    private mutating func refuseSimple(_ refusal: Refusal) -> ByteBuffer {
        let seq = remember(refusal)
        endCycleAtQuery()
        return Wire.query(marker(seq))
    }

    private mutating func refuseExtended(_ refusal: Refusal) -> ByteBuffer {
        let seq = remember(refusal)
        discardingUntilSync = true
        cycles[cycles.count - 1].extended = true
        cycles[cycles.count - 1].expect()
        return Wire.parse(statement: "", query: marker(seq))
    }

    private mutating func closeStatement(_ upstreamName: String, own: Bool) -> ByteBuffer {
        cycles[cycles.count - 1].closes.append(own)
        cycles[cycles.count - 1].extended = true
        cycles[cycles.count - 1].expect()
        return Wire.message(UInt8(ascii: "C")) { buffer in
            buffer.writeInteger(UInt8(ascii: "S"))
            Wire.writeCString(upstreamName, to: &buffer)
        }
    }

    /// A Bind with the database's name of the statement in place of the client's.
    private func rewriteBind(_ bytes: ByteBuffer, statement upstreamName: String) -> ByteBuffer {
        var body = bytes
        body.moveReaderIndex(forwardBy: 5)
        let portal = (try? FrontendDecoder.requiredString(&body, "portal")) ?? ""
        _ = try? FrontendDecoder.requiredString(&body, "statement")
        return Wire.message(UInt8(ascii: "B")) { buffer in
            Wire.writeCString(portal, to: &buffer)
            Wire.writeCString(upstreamName, to: &buffer)
            buffer.writeImmutableBuffer(body)
        }
    }

    /// Describe of a statement names the database's statement; of a portal, passes as it is.
    private mutating func rewriteDescribe(_ bytes: ByteBuffer) -> ByteBuffer {
        var body = bytes
        body.moveReaderIndex(forwardBy: 5)
        guard body.readInteger(as: UInt8.self) == UInt8(ascii: "S") else {
            cycles[cycles.count - 1].extended = true
            cycles[cycles.count - 1].expect()
            return bytes
        }
        let name = (try? FrontendDecoder.requiredString(&body, "name")) ?? ""
        guard let prepared = statements[name] else {
            return refuseExtended(Refusal(code: "26000", message: "prepared statement \"\(name)\" does not exist"))
        }
        cycles[cycles.count - 1].extended = true
        cycles[cycles.count - 1].expect()
        return Wire.message(UInt8(ascii: "D")) { buffer in
            buffer.writeInteger(UInt8(ascii: "S"))
            Wire.writeCString(prepared.upstreamName, to: &buffer)
        }
    }
}
