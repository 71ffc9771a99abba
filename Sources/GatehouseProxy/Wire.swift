// Over 400 lines on purpose: the PostgreSQL protocol codec, both directions, with its limits.
import NIOCore

/// Why a connection's bytes cannot be read as the PostgreSQL protocol. The connection is closed
/// with this text; the proxy and its other connections go on.
public struct WireError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Limits on what a client may send, so a connection cannot make the proxy hold unbounded memory.
public struct WireLimits: Sendable, Equatable {
    /// PostgreSQL's own limit for a startup packet.
    public var startupBytes = 10_000
    /// Any one message after startup (COPY data, a Bind with large parameters, a long statement).
    public var messageBytes = 64 << 20
    /// How long a client has from connecting to being signed in (PostgreSQL's authentication_timeout
    /// is a minute): a connection that says nothing, or half a packet, is closed after this.
    public var signInTimeout: TimeAmount = .seconds(30)

    public init() {}
}

/// The startup packet's parameters, in the order the client sent them.
public struct StartupParameters: Sendable, Equatable {
    public var protocolMinor: Int
    public var pairs: [(String, String)]

    public init(protocolMinor: Int = 0, pairs: [(String, String)]) {
        self.protocolMinor = protocolMinor
        self.pairs = pairs
    }

    public subscript(_ key: String) -> String? { pairs.first { $0.0 == key }?.1 }

    public static func == (lhs: StartupParameters, rhs: StartupParameters) -> Bool {
        lhs.protocolMinor == rhs.protocolMinor && lhs.pairs.map { [$0.0, $0.1] } == rhs.pairs.map { [$0.0, $0.1] }
    }
}

/// What a client sends: the packets before startup, then typed messages.
public enum FrontendMessage: Sendable, Equatable {
    case sslRequest
    case gssEncRequest
    case cancel(processID: Int32, secret: [UInt8])
    case startup(StartupParameters)
    case query(String)
    case parse(statement: String, query: String)
    case bind(portal: String, statement: String)
    case execute(portal: String)
    case describe
    /// Close of a prepared statement (`S`) or portal (`P`).
    case close(kind: UInt8, name: String)
    case sync
    case flush
    case terminate
    case functionCall
    /// A password, SASL initial response or SASL response; read by the sign-in, never forwarded.
    case password([UInt8])
    case copyData
    case copyDone
    case copyFail
}

/// One decoded message and its exact bytes, forwarded unchanged when allowed.
public struct FrontendFrame: Sendable {
    public var message: FrontendMessage
    public var bytes: ByteBuffer
}

/// Splits a client's byte stream into messages. Before startup, packets have no type byte; after
/// it, every message is a type byte and a length. Anything malformed is a `WireError`.
public struct FrontendDecoder: Sendable {
    public static let sslRequestCode: Int32 = 80_877_103
    public static let gssEncRequestCode: Int32 = 80_877_104
    public static let cancelRequestCode: Int32 = 80_877_102

    public var limits: WireLimits
    /// True until the startup message has been read.
    public private(set) var inStartup = true

    public init(limits: WireLimits = WireLimits()) {
        self.limits = limits
    }

    /// The next whole message, or nil when more bytes are needed.
    public mutating func next(_ buffer: inout ByteBuffer) throws(WireError) -> FrontendFrame? {
        inStartup ? try nextStartup(&buffer) : try nextTyped(&buffer)
    }

    private mutating func nextStartup(_ buffer: inout ByteBuffer) throws(WireError) -> FrontendFrame? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: Int32.self) else { return nil }
        guard length >= 8 else { throw WireError("startup packet length \(length) is shorter than its own header") }
        guard length <= limits.startupBytes else { throw WireError("startup packet of \(length) bytes is longer than the \(limits.startupBytes) allowed") }
        guard buffer.readableBytes >= Int(length) else { return nil }
        let bytes = buffer.readSlice(length: Int(length))!
        var body = bytes
        body.moveReaderIndex(forwardBy: 4)
        let code = body.readInteger(as: Int32.self)!
        switch code {
        case Self.sslRequestCode:
            guard length == 8 else { throw WireError("SSLRequest of \(length) bytes; it is always 8") }
            return FrontendFrame(message: .sslRequest, bytes: bytes)
        case Self.gssEncRequestCode:
            guard length == 8 else { throw WireError("GSSENCRequest of \(length) bytes; it is always 8") }
            return FrontendFrame(message: .gssEncRequest, bytes: bytes)
        case Self.cancelRequestCode:
            guard length >= 16, length <= 16 + 256 - 4, let pid = body.readInteger(as: Int32.self) else {
                throw WireError("CancelRequest of \(length) bytes is malformed")
            }
            return FrontendFrame(message: .cancel(processID: pid, secret: body.readBytes(length: body.readableBytes) ?? []), bytes: bytes)
        default:
            let major = Int(code >> 16), minor = Int(code & 0xFFFF)
            guard major == 3 else {
                throw WireError("unsupported frontend protocol \(major).\(minor): Gatehouse speaks protocol 3")
            }
            var pairs: [(String, String)] = []
            while true {
                guard let key = try Self.cString(&body, "startup parameter name") else {
                    throw WireError("startup packet is not terminated by an empty parameter name")
                }
                if key.isEmpty { break }
                guard let value = try Self.cString(&body, "startup parameter `\(key)`") else {
                    throw WireError("startup parameter `\(key)` has no value")
                }
                pairs.append((key, value))
            }
            guard body.readableBytes == 0 else { throw WireError("startup packet has \(body.readableBytes) bytes after its end") }
            inStartup = false
            return FrontendFrame(message: .startup(StartupParameters(protocolMinor: minor, pairs: pairs)), bytes: bytes)
        }
    }

    private mutating func nextTyped(_ buffer: inout ByteBuffer) throws(WireError) -> FrontendFrame? {
        let limit = limits.messageBytes
        guard let (type, bytes, frameBody) = try Wire.typedMessage(&buffer, { type, length in
            length < 4 ? WireError("message '\(Self.printable(type))' has length \(length), shorter than its own length field")
                : length > limit ? WireError("message '\(Self.printable(type))' of \(length) bytes is longer than the \(limit) allowed") : nil
        }) else { return nil }
        var body = frameBody
        let message: FrontendMessage
        switch type {
        case UInt8(ascii: "Q"):
            message = .query(try Self.requiredString(&body, "Query text"))
        case UInt8(ascii: "P"):
            let name = try Self.requiredString(&body, "Parse statement name")
            let query = try Self.requiredString(&body, "Parse query")
            guard let count = body.readInteger(as: Int16.self), count >= 0, body.readableBytes == Int(count) * 4 else {
                throw WireError("Parse parameter type list is malformed")
            }
            message = .parse(statement: name, query: query)
        case UInt8(ascii: "B"):
            let portal = try Self.requiredString(&body, "Bind portal name")
            message = .bind(portal: portal, statement: try Self.requiredString(&body, "Bind statement name"))
        case UInt8(ascii: "E"):
            let portal = try Self.requiredString(&body, "Execute portal name")
            guard body.readInteger(as: Int32.self) != nil, body.readableBytes == 0 else { throw WireError("Execute row limit is malformed") }
            message = .execute(portal: portal)
        case UInt8(ascii: "D"), UInt8(ascii: "C"):
            guard let kind = body.readInteger(as: UInt8.self), kind == UInt8(ascii: "S") || kind == UInt8(ascii: "P") else {
                throw WireError("\(type == UInt8(ascii: "D") ? "Describe" : "Close") must name a statement (S) or portal (P)")
            }
            let name = try Self.requiredString(&body, "statement or portal name")
            message = type == UInt8(ascii: "D") ? .describe : .close(kind: kind, name: name)
        case UInt8(ascii: "S"): message = .sync
        case UInt8(ascii: "H"): message = .flush
        case UInt8(ascii: "X"): message = .terminate
        case UInt8(ascii: "F"): message = .functionCall
        case UInt8(ascii: "p"): message = .password(body.readBytes(length: body.readableBytes) ?? [])
        case UInt8(ascii: "d"): message = .copyData
        case UInt8(ascii: "c"): message = .copyDone
        case UInt8(ascii: "f"): message = .copyFail
        default:
            throw WireError("unknown message type '\(Self.printable(type))'")
        }
        return FrontendFrame(message: message, bytes: bytes)
    }

    /// A NUL-terminated string, nil when the buffer ends first. Text must be UTF-8: the classifier
    /// has to read exactly what the server will.
    static func cString(_ buffer: inout ByteBuffer, _ what: String) throws(WireError) -> String? {
        let view = buffer.readableBytesView
        guard let end = view.firstIndex(of: 0) else { return nil }
        let count = end - view.startIndex
        let bytes = buffer.readBytes(length: count)!
        buffer.moveReaderIndex(forwardBy: 1)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw WireError("\(what) is not valid UTF-8; Gatehouse accepts UTF-8 only (set client_encoding to UTF8)")
        }
        return text
    }

    static func requiredString(_ buffer: inout ByteBuffer, _ what: String) throws(WireError) -> String {
        guard let text = try cString(&buffer, what) else { throw WireError("\(what) is not NUL-terminated") }
        return text
    }

    static func printable(_ type: UInt8) -> String {
        (0x21...0x7E).contains(type) ? String(UnicodeScalar(type)) : "\\x" + String(type, radix: 16)
    }
}

/// What the server sends that the proxy reads; everything else passes by as `.other`.
public enum BackendMessage: Sendable, Equatable {
    case authentication(Authentication)
    case parameterStatus(name: String, value: String)
    case backendKeyData(processID: Int32, secret: [UInt8])
    case readyForQuery(status: UInt8)
    case errorResponse(ErrorFields)
    case parseComplete
    case closeComplete
    case negotiateProtocolVersion
    case other(UInt8)

    /// The server's authentication messages ('R'), by the kind its first field names.
    public enum Authentication: Sendable, Equatable {
        /// AuthenticationOk (0): signed in.
        case ok
        /// AuthenticationCleartextPassword (3).
        case cleartextPassword
        /// AuthenticationMD5Password (5), with its salt (4 bytes when well formed).
        case md5Password(salt: [UInt8])
        /// AuthenticationSASL (10): the mechanisms the server offers.
        case sasl(mechanisms: [String])
        /// AuthenticationSASLContinue (11): the server's challenge.
        case saslContinue([UInt8])
        /// AuthenticationSASLFinal (12): the server's proof.
        case saslFinal([UInt8])
        /// Any other method (Kerberos, GSS, SSPI, ...), which the proxy does not speak.
        case unsupported(code: Int32)

        init(code: Int32, data: [UInt8]) {
            switch code {
            case 0: self = .ok
            case 3: self = .cleartextPassword
            case 5: self = .md5Password(salt: data)
            case 10: self = .sasl(mechanisms: data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) })
            case 11: self = .saslContinue(data)
            case 12: self = .saslFinal(data)
            default: self = .unsupported(code: code)
            }
        }
    }
}

public struct BackendFrame: Sendable {
    public var message: BackendMessage
    public var bytes: ByteBuffer
}

/// The fields of an ErrorResponse or NoticeResponse, by their one-letter codes.
public struct ErrorFields: Sendable, Equatable {
    public var fields: [(UInt8, String)]

    public init(_ fields: [(UInt8, String)]) { self.fields = fields }

    public subscript(_ code: Character) -> String? {
        let byte = code.asciiValue!
        return fields.first { $0.0 == byte }?.1
    }

    public static func == (lhs: ErrorFields, rhs: ErrorFields) -> Bool {
        lhs.fields.map(\.0) == rhs.fields.map(\.0) && lhs.fields.map(\.1) == rhs.fields.map(\.1)
    }
}

/// Splits the server's byte stream into messages. The server is trusted more than clients, but its
/// stream is still checked: a broken upstream ends its one session, not the proxy.
public struct BackendDecoder: Sendable {
    public var maximumBytes = 1 << 30

    public init() {}

    public mutating func next(_ buffer: inout ByteBuffer) throws(WireError) -> BackendFrame? {
        let maximum = maximumBytes
        guard let (type, bytes, frameBody) = try Wire.typedMessage(&buffer, { type, length in
            length >= 4 && length <= maximum ? nil
                : WireError("the database sent a message '\(FrontendDecoder.printable(type))' of impossible length \(length)")
        }) else { return nil }
        var body = frameBody
        let message: BackendMessage
        switch type {
        case UInt8(ascii: "R"):
            guard let code = body.readInteger(as: Int32.self) else { throw WireError("the database sent an empty authentication message") }
            message = .authentication(BackendMessage.Authentication(code: code, data: body.readBytes(length: body.readableBytes) ?? []))
        case UInt8(ascii: "S"):
            message = .parameterStatus(name: try FrontendDecoder.requiredString(&body, "ParameterStatus name"),
                                       value: try FrontendDecoder.requiredString(&body, "ParameterStatus value"))
        case UInt8(ascii: "K"):
            guard let pid = body.readInteger(as: Int32.self) else { throw WireError("the database sent a malformed BackendKeyData") }
            message = .backendKeyData(processID: pid, secret: body.readBytes(length: body.readableBytes) ?? [])
        case UInt8(ascii: "Z"):
            guard let status = body.readInteger(as: UInt8.self) else { throw WireError("the database sent a malformed ReadyForQuery") }
            message = .readyForQuery(status: status)
        case UInt8(ascii: "E"):
            message = .errorResponse(try Self.fields(&body))
        case UInt8(ascii: "1"):
            message = .parseComplete
        case UInt8(ascii: "3"):
            message = .closeComplete
        case UInt8(ascii: "v"):
            message = .negotiateProtocolVersion
        default:
            message = .other(type)
        }
        return BackendFrame(message: message, bytes: bytes)
    }

    static func fields(_ body: inout ByteBuffer) throws(WireError) -> ErrorFields {
        var fields: [(UInt8, String)] = []
        while let code = body.readInteger(as: UInt8.self), code != 0 {
            let value = try FrontendDecoder.cString(&body, "error field") ?? ""
            fields.append((code, value))
        }
        return ErrorFields(fields)
    }
}

/// Builds the messages the proxy itself sends.
public enum Wire {
    /// Splits one typed message (a type byte, then a length that counts itself) off `buffer`: its type,
    /// its whole bytes and its body; nil while incomplete. `problem` judges the length before any wait.
    static func typedMessage(_ buffer: inout ByteBuffer, _ problem: (UInt8, Int32) -> WireError?) throws(WireError)
        -> (type: UInt8, bytes: ByteBuffer, body: ByteBuffer)? {
        let start = buffer.readerIndex
        guard let type = buffer.getInteger(at: start, as: UInt8.self),
              let length = buffer.getInteger(at: start + 1, as: Int32.self) else { return nil }
        if let problem = problem(type, length) { throw problem }
        guard buffer.readableBytes >= Int(length) + 1 else { return nil }
        let bytes = buffer.readSlice(length: Int(length) + 1)!
        return (type, bytes, bytes.getSlice(at: bytes.readerIndex + 5, length: Int(length) - 4)!)
    }

    public static func message(_ type: UInt8, _ body: (inout ByteBuffer) -> Void) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 64)
        buffer.writeInteger(type)
        let lengthIndex = buffer.writerIndex
        buffer.writeInteger(Int32(0))
        body(&buffer)
        buffer.setInteger(Int32(buffer.writerIndex - lengthIndex), at: lengthIndex)
        return buffer
    }

    static func writeCString(_ text: String, to buffer: inout ByteBuffer) {
        buffer.writeString(text)
        buffer.writeInteger(UInt8(0))
    }

    /// An ErrorResponse; `fatal` ends the session.
    public static func error(code: String, message: String, detail: String? = nil, hint: String? = nil, fatal: Bool = false) -> ByteBuffer {
        self.message(UInt8(ascii: "E")) { buffer in
            let severity = fatal ? "FATAL" : "ERROR"
            for (field, value) in [("S", severity), ("V", severity), ("C", code), ("M", message), ("D", detail), ("H", hint)] {
                guard let value else { continue }
                buffer.writeInteger(Character(field).asciiValue!)
                writeCString(value, to: &buffer)
            }
            buffer.writeInteger(UInt8(0))
        }
    }

    public static func authentication(_ code: Int32, _ data: [UInt8] = []) -> ByteBuffer {
        message(UInt8(ascii: "R")) { buffer in
            buffer.writeInteger(code)
            buffer.writeBytes(data)
        }
    }

    public static func query(_ text: String) -> ByteBuffer {
        message(UInt8(ascii: "Q")) { writeCString(text, to: &$0) }
    }

    public static func parse(statement: String, query: String) -> ByteBuffer {
        message(UInt8(ascii: "P")) { buffer in
            writeCString(statement, to: &buffer)
            writeCString(query, to: &buffer)
            buffer.writeInteger(Int16(0))
        }
    }

    public static func password(_ bytes: [UInt8]) -> ByteBuffer {
        message(UInt8(ascii: "p")) { $0.writeBytes(bytes) }
    }

    public static func startup(_ parameters: [(String, String)]) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 128)
        buffer.writeInteger(Int32(0))
        buffer.writeInteger(Int32(3 << 16))
        for (key, value) in parameters {
            writeCString(key, to: &buffer)
            writeCString(value, to: &buffer)
        }
        buffer.writeInteger(UInt8(0))
        buffer.setInteger(Int32(buffer.writerIndex), at: 0)
        return buffer
    }

    public static func cancelRequest(processID: Int32, secret: [UInt8]) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: 16)
        buffer.writeInteger(Int32(12 + secret.count))
        buffer.writeInteger(FrontendDecoder.cancelRequestCode)
        buffer.writeInteger(processID)
        buffer.writeBytes(secret)
        return buffer
    }

    /// NegotiateProtocolVersion: the newest minor version supported and the options not recognised.
    public static func negotiateProtocolVersion(minor: Int32, unrecognized: [String]) -> ByteBuffer {
        message(UInt8(ascii: "v")) { buffer in
            buffer.writeInteger(minor)
            buffer.writeInteger(Int32(unrecognized.count))
            for option in unrecognized { writeCString(option, to: &buffer) }
        }
    }
}
