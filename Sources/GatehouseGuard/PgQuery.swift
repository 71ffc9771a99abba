import CPgQuery
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A statement PostgreSQL's parser refused, with the parser's own message and the byte offset it
/// points at (0-based; libpg_query reports 1-based cursor positions, 0 when it has none).
public struct PgParseError: Error, Sendable, Equatable {
    public var message: String
    public var position: Int?
}

/// Thin wrappers around libpg_query. Every call allocates in a per-thread PostgreSQL memory context,
/// so callers run them on `ParserThreads`, whose threads have a stack large enough for the parser's
/// recursion on the largest statement `SQLClassifier` accepts.
enum PgQuery {
    /// The parse tree as libpg_query's JSON, or the parser's error.
    static func parse(_ sql: String) -> Result<[UInt8], PgParseError> {
        parse(sql) { Array($0) }
    }

    /// Whether PostgreSQL's parser accepts the text (its tree is not copied out).
    static func accepts(_ sql: String) -> Bool {
        if case .success = parse(sql, { _ in () }) { return true }
        return false
    }

    /// What `read` makes of the parse tree's JSON (valid only during the call), or the parser's error.
    static func parse<T>(_ sql: String, _ read: (UnsafeBufferPointer<UInt8>) -> T) -> Result<T, PgParseError> {
        let result = pg_query_parse(sql)
        defer { pg_query_free_parse_result(result) }
        if let error = result.error { return .failure(convert(error.pointee)) }
        guard let tree = result.parse_tree else {
            return .failure(PgParseError(message: "the parser returned no tree", position: nil))
        }
        return .success(read(bytes(of: tree)))
    }

    /// The PL/pgSQL function tree for a `CREATE FUNCTION ... LANGUAGE plpgsql` or `DO` statement.
    static func parsePlpgsql(_ sql: String) -> Result<[UInt8], PgParseError> {
        let result = pg_query_parse_plpgsql(sql)
        defer { pg_query_free_plpgsql_parse_result(result) }
        if let error = result.error { return .failure(convert(error.pointee)) }
        guard let tree = result.plpgsql_funcs else {
            return .failure(PgParseError(message: "the PL/pgSQL parser returned no tree", position: nil))
        }
        return .success(Array(bytes(of: tree)))
    }

    /// The statement rebuilt from its parse tree: comments gone, spacing and case normalised.
    static func deparse(_ sql: String) -> String? {
        let parsed = pg_query_parse_protobuf(sql)
        defer { pg_query_free_protobuf_parse_result(parsed) }
        guard parsed.error == nil else { return nil }
        let result = pg_query_deparse_protobuf(parsed.parse_tree)
        defer { pg_query_free_deparse_result(result) }
        guard result.error == nil, let query = result.query else { return nil }
        return String(cString: query)
    }

    /// The text's tokens as PostgreSQL's scanner reads them, without its comments: token texts kept
    /// byte for byte (strings and dollar-quoted bodies intact), one space wherever the text had space
    /// or a comment between two tokens. For approvers when `deparse` cannot rebuild a statement
    /// (libpg_query does not deparse a `BEGIN ATOMIC` function body). Nil when the text does not scan.
    static func withoutComments(_ sql: String) -> String? {
        guard let tokens = tokens(sql) else { return nil }
        let text = Array(sql.utf8)
        var out: [UInt8] = []
        var lastEnd: Int?
        for token in tokens {
            if let lastEnd, token.start > lastEnd { out.append(UInt8(ascii: " ")) }
            out += text[token.start..<token.end]
            lastEnd = token.end
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// A dollar-quote tag that does not occur in `code`.
    static func dollarTag(avoiding code: String) -> String {
        // The numbers of the `$gh$`, `$gh1$`, ... the code holds, found in one pass (looking for each candidate
        // in turn took quadratic time on a text full of them); `$gh$` is number 0.
        var taken: Set<Int> = []
        let bytes = Array(code.utf8)
        var index = 0
        while index + 3 < bytes.count {
            if bytes[index] == UInt8(ascii: "$"), bytes[index + 1] == UInt8(ascii: "g"), bytes[index + 2] == UInt8(ascii: "h") {
                var end = index + 3
                var number = 0
                while end < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[end]), number < 1 << 40 {
                    number = number * 10 + Int(bytes[end] - UInt8(ascii: "0"))
                    end += 1
                }
                if end < bytes.count, bytes[end] == UInt8(ascii: "$") {
                    // `$gh$` and `$gh0$`... are told apart by their digits: `$gh$` has none.
                    taken.insert(end == index + 3 ? 0 : (bytes[index + 3] == UInt8(ascii: "0") ? -1 : number))
                }
            }
            index += 1
        }
        var counter = 0
        while taken.contains(counter) { counter += 1 }
        return counter == 0 ? "$gh$" : "$gh\(counter)$"
    }

    /// The text's tokens as PostgreSQL's scanner reads them, comments left out unless asked for, each
    /// within the text's bytes; nil when the text does not scan.
    static func tokens(_ sql: String, comments: Bool = false) -> [ScanTokens.Token]? {
        let result = pg_query_scan(sql)
        defer { pg_query_free_scan_result(result) }
        guard result.error == nil, let data = result.pbuf.data,
              let tokens = ScanTokens.read(UnsafeRawBufferPointer(start: data, count: Int(result.pbuf.len))) else { return nil }
        let size = sql.utf8.count
        guard tokens.allSatisfy({ $0.start >= 0 && $0.end <= size && $0.start <= $0.end }) else { return nil }
        return comments ? tokens : tokens.filter { !ScanTokens.comments.contains($0.kind) }
    }

    private static func bytes(of cString: UnsafePointer<CChar>) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(start: UnsafeRawPointer(cString).assumingMemoryBound(to: UInt8.self), count: strlen(cString))
    }

    private static func convert(_ error: PgQueryError) -> PgParseError {
        let message = error.message.map { String(cString: $0) } ?? "syntax error"
        return PgParseError(message: message, position: error.cursorpos > 0 ? Int(error.cursorpos) - 1 : nil)
    }
}

extension String {
    /// Whether the text holds a NUL byte (where PostgreSQL, reading a C string, would stop), found with
    /// `memchr` over the text's UTF-8 rather than one byte at a time through `UTF8View`.
    var containsNUL: Bool {
        var text = self
        return text.withUTF8 { utf8 in utf8.baseAddress.map { memchr($0, 0, utf8.count) != nil } ?? false }
    }
}

/// libpg_query's scan result (protobuf `ScanResult`: 1 version, 2 repeated `ScanToken`: 1 start,
/// 2 end, 4 token, 5 keyword kind), read with just enough of the wire format.
enum ScanTokens {
    struct Token: Equatable {
        var start = 0
        var end = 0
        var kind = 0
    }

    /// `SQL_COMMENT` and `C_COMMENT` in libpg_query's `Token` enum.
    static let comments: Set<Int> = [275, 276]

    static func read(_ bytes: UnsafeRawBufferPointer) -> [Token]? {
        var index = 0
        var tokens: [Token] = []
        while index < bytes.count {
            guard let key = varint(bytes, &index) else { return nil }
            switch (key >> 3, key & 7) {
            case (2, 2):
                guard let length = varint(bytes, &index), length <= bytes.count - index,
                      let token = token(bytes, from: index, to: index + length) else { return nil }
                tokens.append(token)
                index += length
            case (_, 0):
                guard varint(bytes, &index) != nil else { return nil }
            case (_, 2):
                guard let length = varint(bytes, &index), length <= bytes.count - index else { return nil }
                index += length
            default:
                return nil
            }
        }
        return tokens
    }

    private static func token(_ bytes: UnsafeRawBufferPointer, from start: Int, to end: Int) -> Token? {
        var token = Token()
        var index = start
        while index < end {
            guard let key = varint(bytes, &index, end: end), key & 7 == 0, let value = varint(bytes, &index, end: end) else { return nil }
            switch key >> 3 {
            case 1: token.start = value
            case 2: token.end = value
            case 4: token.kind = value
            default: break
            }
        }
        return token
    }

    private static func varint(_ bytes: UnsafeRawBufferPointer, _ index: inout Int, end: Int? = nil) -> Int? {
        let end = end ?? bytes.count
        var value = 0
        var shift = 0
        while index < end, shift < 63 {
            let byte = bytes[index]
            index += 1
            value |= Int(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
        return nil
    }
}
