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
    private struct State {
        var sessions: [ObjectIdentifier: ProxyConnection] = [:]
        var byCancelKey: [CancelKey: ProxyConnection] = [:]
    }

    private let state = NIOLockedValueBox(State())

    func add(_ connection: ProxyConnection) {
        state.withLockedValue { $0.sessions[ObjectIdentifier(connection)] = connection }
    }

    func register(_ key: CancelKey, for connection: ProxyConnection) {
        state.withLockedValue { $0.byCancelKey[key] = connection }
    }

    func remove(_ connection: ProxyConnection, key: CancelKey?) {
        state.withLockedValue { state in
            state.sessions[ObjectIdentifier(connection)] = nil
            if let key, state.byCancelKey[key] === connection { state.byCancelKey[key] = nil }
        }
    }


    /// Forwards a CancelRequest to the database, only for a key one of this listener's sessions holds:
    /// a cancel is never a way to reach the database for anyone else.
    func cancel(resource: String, key: CancelKey, eventLoop: EventLoop) {
        guard let connection = state.withLockedValue({ $0.byCancelKey[key] }), connection.shared.resource == resource else { return }
        cancelNow(key, settings: connection.shared.settings, eventLoop: eventLoop)
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

    /// Asks for the current access of every live session, once per principal, token and resource,
    /// and hands each session its answer on its own event loop.
    func watch(_ service: UseCases) async {
        let sessions = state.withLockedValue { Array($0.sessions.values) }
        var groups: [String: [ProxyConnection]] = [:]
        for session in sessions {
            guard let identity = session.identity else { continue }
            groups["\(identity.caller.tokenId)/\(identity.resource)", default: []].append(session)
        }
        for members in groups.values {
            guard let identity = members[0].identity else { continue }
            // A store that cannot answer changes nothing: expiry is still judged on each statement,
            // and nothing can be revoked while the store is down.
            guard let access = try? await service.proxy.access(identity) else { continue }
            for member in members {
                member.eventLoop?.execute { member.update(access) }
            }
        }
    }
}
