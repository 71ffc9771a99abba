import Foundation
import GatehouseCore
import GatehouseApp
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The key a client uses to cancel a running statement: the database's own BackendKeyData,
/// passed through unchanged.
struct CancelKey: Hashable, Sendable {
    var processID: Int32
    var secret: [UInt8]
}

/// The live sessions of a proxy: for CancelRequest routing and for the watcher that ends sessions
/// whose grant has ended.
final class SessionRegistry: Sendable {
    /// A live session as other threads may see it: who it is, and its handler, reachable only on its own event loop.
    private struct Entry {
        var identity: ProxyAuthority.ProxyIdentity
        var connection: NIOLoopBound<ProxyConnection>
    }

    private struct State {
        var sessions: [ObjectIdentifier: Entry] = [:]
        var byCancelKey: [CancelKey: ObjectIdentifier] = [:]
        /// Sessions held (or being started) per resource and principal.
        var held: [String: Int] = [:]
        /// Open connections per resource and client address.
        var connections: [String: Int] = [:]
        /// Connections not signed in yet (no session): a stopping proxy tells them too.
        var opening: [ObjectIdentifier: NIOLoopBound<ProxyConnection>] = [:]
        /// Set once the proxy stops: a connection accepted just before its listener closed, whose handler
        /// is added after `endAll` looked, is told at once.
        var stopping: String?
    }

    private let state = NIOLockedValueBox(State())

    /// Takes one of a principal's session places on a resource, unless all `limit` are taken.
    func reserveSession(principal: String, resource: String, limit: Int) -> Bool {
        let key = resource + "\u{0}" + principal
        return state.withLockedValue { state in
            guard state.held[key, default: 0] < limit else { return false }
            state.held[key, default: 0] += 1
            return true
        }
    }

    func releaseSession(principal: String, resource: String) {
        let key = resource + "\u{0}" + principal
        state.withLockedValue { state in
            let left = state.held[key, default: 1] - 1
            state.held[key] = left > 0 ? left : nil
        }
    }

    /// Counts a new connection from `address`, unless it already holds `limit`.
    func admitConnection(from address: String, resource: String, limit: Int) -> Bool {
        let key = resource + "\u{0}" + address
        return state.withLockedValue { state in
            guard state.connections[key, default: 0] < limit else { return false }
            state.connections[key, default: 0] += 1
            return true
        }
    }

    func connectionClosed(from address: String, resource: String) {
        let key = resource + "\u{0}" + address
        state.withLockedValue { state in
            let left = state.connections[key, default: 1] - 1
            state.connections[key] = left > 0 ? left : nil
        }
    }

    /// Called on the connection's event loop when it is accepted, before it signs in. Returns the proxy's
    /// stopping message when it is already stopping (the connection is not kept: it ends with it).
    func opened(_ connection: ProxyConnection, eventLoop: EventLoop) -> String? {
        let bound = NIOLoopBound(connection, eventLoop: eventLoop)
        return state.withLockedValue { state in
            if let message = state.stopping { return message }
            state.opening[ObjectIdentifier(connection)] = bound
            return nil
        }
    }

    /// Called on the connection's event loop once its session has started.
    func add(_ connection: ProxyConnection, identity: ProxyAuthority.ProxyIdentity, eventLoop: EventLoop) {
        let entry = Entry(identity: identity, connection: NIOLoopBound(connection, eventLoop: eventLoop))
        state.withLockedValue { state in
            state.opening[ObjectIdentifier(connection)] = nil
            state.sessions[ObjectIdentifier(connection)] = entry
        }
    }

    func register(_ key: CancelKey, for connection: ProxyConnection) {
        state.withLockedValue { $0.byCancelKey[key] = ObjectIdentifier(connection) }
    }

    func remove(_ connection: ProxyConnection, key: CancelKey?) {
        let id = ObjectIdentifier(connection)
        state.withLockedValue { state in
            state.sessions[id] = nil
            state.opening[id] = nil
            if let key, state.byCancelKey[key] == id { state.byCancelKey[key] = nil }
        }
    }

    /// Forwards a CancelRequest to the database, only for a key one of this listener's sessions holds:
    /// a cancel is never a way to reach the database for anyone else.
    func cancel(resource: String, settings: ProxySettings, key: CancelKey, eventLoop: EventLoop) {
        let owner = state.withLockedValue { state in state.byCancelKey[key].flatMap { state.sessions[$0]?.identity.resource } }
        guard owner == resource else { return }
        cancelNow(key, settings: settings, eventLoop: eventLoop)
    }

    /// Sends the database a CancelRequest for a session being ended.
    func cancelNow(_ key: CancelKey, settings: ProxySettings, eventLoop: EventLoop) {
        ClientBootstrap(group: eventLoop)
            .connectTimeout(.seconds(5))
            .connect(host: settings.upstreamHost, port: settings.upstreamPort)
            .whenSuccess { channel in
                channel.writeAndFlush(Wire.cancelRequest(processID: key.processID, secret: key.secret)).whenComplete { _ in
                    channel.close(promise: nil)
                }
            }
    }

    /// Ends every live session, and every connection still signing in, with `message` and waits until their
    /// connections have closed.
    func endAll(_ message: String) async {
        let connections = state.withLockedValue { state in
            state.stopping = message
            return state.sessions.values.map(\.connection) + Array(state.opening.values)
        }
        let closed = connections.map { connection in
            connection.eventLoop.flatSubmit {
                connection.value.stopping(message) ?? connection.eventLoop.makeSucceededVoidFuture()
            }
        }
        for future in closed { try? await future.get() }
    }

    /// Asks for the current access of every live session, once per principal, token and resource,
    /// and hands each session its answer on its own event loop.
    func watch(_ service: UseCases) async {
        let sessions = state.withLockedValue { Array($0.sessions.values) }
        var groups: [String: [Entry]] = [:]
        for session in sessions {
            groups["\(session.identity.caller.tokenId)/\(session.identity.resource)", default: []].append(session)
        }
        for members in groups.values {
            // A store that cannot answer changes nothing: expiry is still judged on each statement,
            // and nothing can be revoked while the store is down.
            guard let access = try? await service.proxy.access(members[0].identity) else { continue }
            for member in members {
                let connection = member.connection
                connection.eventLoop.execute { connection.value.update(access) }
            }
        }
    }
}
