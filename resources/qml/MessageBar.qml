import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import Veraltheim

// The one place errors and notices reach the user: what happened, and what to do.
Rectangle {
    id: bar
    required property Notices notices
    objectName: "messageBar"
    visible: bar.notices.shown
    implicitHeight: visible ? row.implicitHeight + 16 : 0
    color: bar.notices.isError ? "#f8d7da" : bar.notices.isWarning ? "#fff3cd" : "#d1ecf1"
    border.color: bar.notices.isError ? "#c0392b" : bar.notices.isWarning ? "#d39e00" : "#2a7fa0"
    Accessible.role: Accessible.AlertMessage
    Accessible.name: bar.notices.text + " " + bar.notices.hint

    RowLayout {
        id: row
        anchors.fill: parent
        anchors.margins: 8
        spacing: 10
        Label {
            text: bar.notices.isInfo ? "\u2139" : "\u26a0"
            color: "#222"
            font.pixelSize: 18
        }
        ColumnLayout {
            Layout.fillWidth: true
            spacing: 2
            Label {
                objectName: "messageText"
                text: bar.notices.text
                color: "#1b1b1b"
                font.bold: true
                wrapMode: Text.Wrap
                Layout.fillWidth: true
            }
            Label {
                objectName: "messageHint"
                text: bar.notices.hint
                color: "#333"
                visible: text !== ""
                wrapMode: Text.Wrap
                Layout.fillWidth: true
            }
        }
        Button {
            objectName: "messageDismiss"
            text: "Dismiss"
            Accessible.name: "Dismiss message"
            onClicked: bar.notices.dismiss()
        }
    }
}
