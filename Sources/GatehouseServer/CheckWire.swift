import Foundation
import GatehouseAPI
import GatehouseCore
import HTTPTypes
import Hummingbird
import NIOCore

/// `POST /v1/check` is what every integration calls before every action, so its body is read and its
/// answer written here rather than through the generated layer's Foundation coders. The contract is the
/// same: the reader accepts only the plain forms of `CheckInput` (known keys once each, string values
/// with the short escapes, `principal` possibly null) and gives up (nil) on anything else, which then
/// goes through the generated layer and gets exactly its answer or its error. The writer produces the
/// bytes Foundation's `JSONEncoder` produces with sorted keys and the server's date format.
enum CheckWire {
    // MARK: reading

    static func decode(_ bytes: UnsafeRawBufferPointer) -> Components.Schemas.CheckInput? {
        var reader = Reader(bytes: bytes)
        var resource: String?, role: String?, principal: String??, action: Components.Schemas.ActionInput?
        guard reader.take(UInt8(ascii: "{")) else { return nil }
        repeat {
            guard let key = reader.string(), reader.take(UInt8(ascii: ":")) else { return nil }
            switch key {
            case "resource":
                guard resource == nil, let value = reader.string() else { return nil }
                resource = value
            case "role":
                guard role == nil, let value = reader.string() else { return nil }
                role = value
            case "principal":
                guard principal == nil else { return nil }
                if reader.takeNull() { principal = .some(nil) } else {
                    guard let value = reader.string() else { return nil }
                    principal = value
                }
            case "action":
                guard action == nil, let value = reader.action() else { return nil }
                action = value
            default:
                return nil
            }
        } while reader.take(UInt8(ascii: ","))
        guard reader.take(UInt8(ascii: "}")), reader.atEnd, let resource else { return nil }
        switch (role, action) {
        case (let role?, nil): return .RoleCheck(.init(resource: resource, role: role, principal: principal ?? nil))
        case (nil, let action?): return .ActionCheck(.init(resource: resource, action: action, principal: principal ?? nil))
        default: return nil
        }
    }

    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var index = 0

        var atEnd: Bool {
            mutating get { skipSpace(); return index == bytes.count }
        }

        mutating func skipSpace() {
            while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D || bytes[index] == 0x09 {
                index += 1
            }
        }

        mutating func take(_ byte: UInt8) -> Bool {
            skipSpace()
            guard index < bytes.count, bytes[index] == byte else { return false }
            index += 1
            return true
        }

        mutating func takeNull() -> Bool {
            skipSpace()
            guard bytes.count - index >= 4, bytes[index] == UInt8(ascii: "n"), bytes[index + 1] == UInt8(ascii: "u"),
                  bytes[index + 2] == UInt8(ascii: "l"), bytes[index + 3] == UInt8(ascii: "l") else { return false }
            index += 4
            return true
        }

        /// `{"kind": "sql"|"shell", "text": "..."}`, each key once.
        mutating func action() -> Components.Schemas.ActionInput? {
            var kind: Components.Schemas.ActionInput.KindPayload?, text: String?
            guard take(UInt8(ascii: "{")) else { return nil }
            repeat {
                guard let key = string(), take(UInt8(ascii: ":")) else { return nil }
                switch key {
                case "kind":
                    guard kind == nil, let value = string().flatMap(Components.Schemas.ActionInput.KindPayload.init(rawValue:)) else { return nil }
                    kind = value
                case "text":
                    guard text == nil, let value = string() else { return nil }
                    text = value
                default:
                    return nil
                }
            } while take(UInt8(ascii: ","))
            guard take(UInt8(ascii: "}")), let kind, let text else { return nil }
            return .init(kind: kind, text: text)
        }

        /// A JSON string with no escapes or only the short ones (`\"`, `\\`, `\/`, `\b`, `\f`, `\n`,
        /// `\r`, `\t`), valid UTF-8. Nil for anything else (`\u` escapes included).
        mutating func string() -> String? {
            guard take(UInt8(ascii: "\"")) else { return nil }
            let start = index
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") {
                    defer { index += 1 }
                    return String(validating: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                }
                if byte == UInt8(ascii: "\\") { break }
                if byte < 0x20 { return nil }
                index += 1
            }
            var text = Array(bytes[start..<index])
            while index < bytes.count {
                let byte = bytes[index]
                switch byte {
                case UInt8(ascii: "\""):
                    index += 1
                    return String(validating: text, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    guard index + 1 < bytes.count else { return nil }
                    switch bytes[index + 1] {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): text.append(bytes[index + 1])
                    case UInt8(ascii: "b"): text.append(0x08)
                    case UInt8(ascii: "f"): text.append(0x0C)
                    case UInt8(ascii: "n"): text.append(0x0A)
                    case UInt8(ascii: "r"): text.append(0x0D)
                    case UInt8(ascii: "t"): text.append(0x09)
                    default: return nil
                    }
                    index += 2
                case 0..<0x20:
                    return nil
                default:
                    text.append(byte)
                    index += 1
                }
            }
            return nil
        }
    }

    // MARK: writing

    static func encode(_ result: Components.Schemas.CheckResult) -> ByteBuffer {
        var out = Writer()
        out.open()
        if let classification = result.classification {
            out.key("classification")
            out.open()
            out.key("findings")
            out.raw("[")
            for (index, finding) in classification.findings.enumerated() {
                if index > 0 { out.raw(",") }
                out.open()
                out.key("category"); out.string(finding.category)
                out.key("detail"); out.string(finding.detail)
                out.key("level"); out.string(finding.level.rawValue)
                out.key("position"); out.integer(finding.position)
                out.key("statement"); out.integer(finding.statement)
                out.close()
            }
            out.raw("]")
            out.key("kind"); out.string(classification.kind.rawValue)
            if let normalized = classification.normalized { out.key("normalized"); out.string(normalized) }
            out.key("risk"); out.string(classification.risk.rawValue)
            out.key("sha256"); out.string(classification.sha256)
            out.key("statements"); out.integer(classification.statements)
            out.close()
        }
        out.key("decision"); out.string(result.decision.rawValue)
        if let expiresAt = result.expiresAt { out.key("expires_at"); out.string(expiresAt.rfc3339) }
        if let grantId = result.grantId { out.key("grant_id"); out.string(grantId) }
        out.key("principal"); out.string(result.principal)
        if let reason = result.reason { out.key("reason"); out.string(reason) }
        if let command = result.requestCommand { out.key("request_command"); out.string(command) }
        if let commands = result.requestCommands {
            out.key("request_commands")
            out.raw("[")
            for (index, command) in commands.enumerated() {
                if index > 0 { out.raw(",") }
                out.string(command)
            }
            out.raw("]")
        }
        out.key("resource"); out.string(result.resource)
        if let role = result.role { out.key("role"); out.string(role) }
        if let used = result.usedGrant { out.key("used_grant"); out.raw(used ? "true" : "false") }
        out.close()
        return out.buffer
    }

    /// Writes one JSON object at a time; `key` puts the comma between members.
    private struct Writer {
        var buffer = ByteBufferAllocator().buffer(capacity: 512)
        /// Whether the object being written has no member yet.
        private var first = true

        mutating func raw(_ text: StaticString) { buffer.writeStaticString(text) }

        mutating func open() {
            raw("{")
            first = true
        }

        mutating func close() {
            raw("}")
            first = false
        }

        mutating func key(_ name: StaticString) {
            if !first { raw(",") }
            first = false
            raw("\"")
            raw(name)
            raw("\":")
        }

        mutating func integer(_ value: Int) { buffer.writeString(String(value)) }

        /// Escaped as Foundation's `JSONEncoder` escapes (without `.withoutEscapingSlashes`).
        mutating func string(_ value: String) {
            raw("\"")
            var value = value
            value.withUTF8 { bytes in
                var plainFrom = 0
                for (index, byte) in bytes.enumerated() {
                    let escape: StaticString
                    var hex = false
                    switch byte {
                    case UInt8(ascii: "\""): escape = "\\\""
                    case UInt8(ascii: "\\"): escape = "\\\\"
                    case UInt8(ascii: "/"): escape = "\\/"
                    case 0x08: escape = "\\b"
                    case 0x09: escape = "\\t"
                    case 0x0A: escape = "\\n"
                    case 0x0C: escape = "\\f"
                    case 0x0D: escape = "\\r"
                    case 0..<0x20: escape = "\\u00"; hex = true
                    default: continue
                    }
                    buffer.writeBytes(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[plainFrom..<index])))
                    buffer.writeStaticString(escape)
                    if hex {
                        let digits: StaticString = "0123456789abcdef"
                        buffer.writeInteger(digits.utf8Start[Int(byte >> 4)])
                        buffer.writeInteger(digits.utf8Start[Int(byte & 0xF)])
                    }
                    plainFrom = index + 1
                }
                buffer.writeBytes(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[plainFrom...])))
            }
            raw("\"")
        }
    }
}

/// Answers `POST /v1/check` bodies `CheckWire` can read, with the same handler as the generated route
/// (`APIHandler.check(body:)`); everything else (other content or accept types, bodies it does not
/// read) goes on to the generated layer unchanged. Runs after the caller is authenticated.
struct CheckFastPath: RouterMiddleware {
    typealias Context = GatehouseRequestContext
    let handler: APIHandler

    static let contentType = "application/json; charset=utf-8"

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.method == .post, request.uri.path == "/v1/check", Self.plainJSON(request.headers) else {
            return try await next(request, context)
        }
        var request = request
        let body = try await request.collectBody(upTo: context.maxUploadSize)
        guard let input = body.withUnsafeReadableBytes({ CheckWire.decode($0) }) else { return try await next(request, context) }
        let result = try await handler.check(body: input)
        return Response(status: .ok, headers: [.contentType: Self.contentType], body: .init(byteBuffer: CheckWire.encode(result)))
    }

    /// `Content-Type: application/json` (any parameters) and no `Accept`, or one that is exactly
    /// `application/json` or `*/*`: the forms the generated layer takes without further questions.
    static func plainJSON(_ headers: HTTPFields) -> Bool {
        guard let type = headers[.contentType], ContractMiddleware.mediaType(type) == "application/json" else { return false }
        guard let accept = headers[.accept] else { return true }
        return accept == "application/json" || accept == "*/*"
    }
}

/// A JSON body of the API whose object names a member twice is refused (`duplicate_field`): parsers
/// disagree on which value counts, so something in front of Gatehouse could read another request than
/// Gatehouse would. After `CheckFastPath`, whose reader already takes each key once.
struct DuplicateNamesRefused: RouterMiddleware {
    typealias Context = GatehouseRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // Every API body whatever its Content-Type says (the generated layer reads some odd ones as JSON),
        // on the path as the router reads it (`//v1/check` is `/v1/check`); Slack's is a form.
        let path = RequestInfoMiddleware.routedPath(request.uri.path)
        guard request.method == .post, path.hasPrefix("/v1/"), path != SlackInteractions.path else {
            return try await next(request, context)
        }
        var request = request
        let body = try await request.collectBody(upTo: context.maxUploadSize)
        // UTF-16 and UTF-32 (which Foundation would transcode) always hold a zero byte; UTF-8 JSON never does.
        if body.readableBytesView.contains(0) {
            throw GatehouseError(.invalid, "malformed_json", "the body holds a zero byte: send JSON encoded as UTF-8")
        }
        if let name = body.withUnsafeReadableBytes({ JSONDuplicateKeys.first(in: $0) }) {
            throw GatehouseError(.invalid, "duplicate_field", "`\(name.prefix(100))` is given twice in one object of the body; send each field once", field: String(name.prefix(100)))
        }
        return try await next(request, context)
    }
}
