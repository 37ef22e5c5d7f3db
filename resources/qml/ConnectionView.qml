import QtQuick
import QtQuick.Controls
import QtQuick.Layouts

Item {
    id: view
    objectName: "connectionView"

    RowLayout {
        anchors.fill: parent
        anchors.margins: 10
        spacing: 12

        ColumnLayout {
            Layout.preferredWidth: 480
            Layout.fillHeight: true
            spacing: 8

            GroupBox {
                title: "Service"
                Layout.fillWidth: true
                GridLayout {
                    anchors.fill: parent
                    columns: 2
                    columnSpacing: 10
                    Label { text: "Address" }
                    TextField {
                        id: address
                        objectName: "connectionAddress"
                        Accessible.name: "Service address"
                        Layout.fillWidth: true
                        text: connection.address || settings.serviceUrl
                        selectByMouse: true
                    }
                    Label { text: "Token" }
                    TextField {
                        id: token
                        objectName: "connectionToken"
                        Accessible.name: "Sign-in token"
                        Layout.fillWidth: true
                        echoMode: TextInput.Password
                        placeholderText: "paste the token from `veraltheim-service token issue`"
                        text: settings.token
                        selectByMouse: true
                    }
                    Item { width: 1; height: 1 }
                    RowLayout {
                        Button {
                            objectName: "connectButton"
                            text: "Sign in and connect"
                            Accessible.name: "Sign in and connect"
                            onClicked: connection.connectTo(address.text, token.text)
                        }
                        Button {
                            objectName: "disconnectButton"
                            text: "Disconnect"
                            Accessible.name: "Disconnect"
                            enabled: connection.state !== "disconnected"
                            onClicked: connection.disconnectNow()
                        }
                    }
                }
            }

            GroupBox {
                title: "State"
                Layout.fillWidth: true
                GridLayout {
                    anchors.fill: parent
                    columns: 2
                    columnSpacing: 10
                    Label { text: "State" }
                    Label { objectName: "connectionState"; text: connection.state; font.bold: true; Accessible.name: "State " + text }
                    Label { text: "Round trip" }
                    Label { objectName: "connectionRtt"; text: connection.rttMs >= 0 ? connection.rttMs.toFixed(1) + " ms" : "\u2014" }
                    Label { text: "Security" }
                    Label {
                        objectName: "connectionTls"
                        text: connection.tls ? "encrypted: TLS (wss://)" : "not encrypted (ws://)"
                        Accessible.name: connection.tls ? "TLS on" : "TLS off"
                    }
                    Label { text: "Signed in as" }
                    Label { objectName: "connectionUser"; text: connection.user || "\u2014" }
                    Label { text: "Details" }
                    Label {
                        objectName: "connectionDetail"
                        text: connection.detail || "\u2014"
                        wrapMode: Text.Wrap
                        Layout.fillWidth: true
                    }
                }
            }
            Item { Layout.fillHeight: true }
        }

        GroupBox {
            title: "People connected (" + connection.people.count + ")"
            Layout.fillWidth: true
            Layout.fillHeight: true
            ListView {
                id: people
                objectName: "presenceList"
                Accessible.name: "People connected"
                anchors.fill: parent
                clip: true
                model: connection.people
                delegate: ItemDelegate {
                    required property string user
                    required property string detail
                    width: people.width
                    text: "\u25cf " + user + (detail ? "   " + detail : "")
                    Accessible.name: user
                }
                Label {
                    anchors.centerIn: parent
                    visible: people.count === 0
                    opacity: 0.6
                    text: "Nobody to show: not connected."
                }
            }
        }
    }
}
