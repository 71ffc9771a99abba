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
        let result = pg_query_parse(sql)
        defer { pg_query_free_parse_result(result) }
        if let error = result.error { return .failure(convert(error.pointee)) }
        guard let tree = result.parse_tree else {
            return .failure(PgParseError(message: "the parser returned no tree", position: nil))
        }
        return .success(bytes(of: tree))
    }

    /// The PL/pgSQL function tree for a `CREATE FUNCTION ... LANGUAGE plpgsql` or `DO` statement.
    static func parsePlpgsql(_ sql: String) -> Result<[UInt8], PgParseError> {
        let result = pg_query_parse_plpgsql(sql)
        defer { pg_query_free_plpgsql_parse_result(result) }
        if let error = result.error { return .failure(convert(error.pointee)) }
        guard let tree = result.plpgsql_funcs else {
            return .failure(PgParseError(message: "the PL/pgSQL parser returned no tree", position: nil))
        }
        return .success(bytes(of: tree))
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

    private static func bytes(of cString: UnsafePointer<CChar>) -> [UInt8] {
        let length = strlen(cString)
        return cString.withMemoryRebound(to: UInt8.self, capacity: length) {
            Array(UnsafeBufferPointer(start: $0, count: length))
        }
    }

    private static func convert(_ error: PgQueryError) -> PgParseError {
        let message = error.message.map { String(cString: $0) } ?? "syntax error"
        return PgParseError(message: message, position: error.cursorpos > 0 ? Int(error.cursorpos) - 1 : nil)
    }
}
